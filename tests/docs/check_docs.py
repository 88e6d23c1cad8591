#!/usr/bin/env python3
"""Checks that the user documentation in docs/ says what the code does.

Checks (each one a ctest test, label `docs`):
  reasons         every x-sluice-error reason (with its status) that proxy/ can answer is a row of
                  the table in docs/statuses.md, and every row there is one the code answers
  admin-statuses  the admin API's error statuses in proxy/admin/ and proxy/control/ are exactly
                  the rows of the admin table in docs/statuses.md
  config-keys     every key the loader accepts (its check_keys lists in proxy/config/loader.cpp
                  and the shift plan's keys in proxy/config/shift_plan.cpp) is a row of a key table
                  in docs/configuration.md and is mentioned in config/sluice.toml; every row of
                  those tables is a key the loader accepts
  links           no page sends users to DESIGN.md (they do not have it); every relative link in
                  README.md and docs/*.md reaches an existing file and, with #anchor, a heading
  layout          README.md's Layout table names every folder of proxy/, every top-level folder
                  and every folder of tests/, and only paths that exist
  examples        the TOML examples of docs/configuration.md, put together in order, are one
                  file that `sluice check` accepts (strict: the first example sets strict = true)

Prints each problem as file:line: message and exits 1 if there is any.

usage: check_docs.py ROOT CHECK... [--sluice BINARY]   (ROOT: the repository; `examples` needs
                                                        the sluice binary)
       check_docs.py ROOT --self-test  (shows that each check fails on a broken copy)
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

CHECKS = ("reasons", "admin-statuses", "config-keys", "links", "layout", "examples")


class Problems:
    def __init__(self, root):
        self.root = root
        self.items = []

    def add(self, path, line, message):
        rel = os.path.relpath(path, self.root) if os.path.isabs(path) else path
        self.items.append(f"{rel}:{line}: {message}")


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def line_of(text, offset):
    return text.count("\n", 0, offset) + 1


def sources(root, folders=None):
    """(path, text) of every .cpp/.h under proxy/ (or under the given proxy/ folders)."""
    base = os.path.join(root, "proxy")
    out = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        rel = os.path.relpath(dirpath, base)
        top = rel.split(os.sep)[0]
        if folders is not None and top not in folders:
            continue
        for name in sorted(filenames):
            if name.endswith((".cpp", ".h")):
                path = os.path.join(dirpath, name)
                out.append((path, read(path)))
    return out


def call_args(text, open_paren):
    """The text between the parenthesis at open_paren and its match (string literals skipped)."""
    depth, i, in_str = 0, open_paren, False
    while i < len(text):
        c = text[i]
        if in_str:
            if c == "\\":
                i += 1
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[open_paren + 1 : i]
        i += 1
    return None


def strip_comments(text):
    """Blanks // and /* */ comments (keeping offsets and line numbers) outside string literals."""
    out, i, n = list(text), 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                out[i] = " "
                i += 1
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            for k in range(i, end):
                if out[k] != "\n":
                    out[k] = " "
            i = end
            continue
        i += 1
    return "".join(out)


STRING = re.compile(r'"((?:[^"\\]|\\.)*)"')
REASON = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


# ---- reasons ----

ERROR_CALL = re.compile(r"\b(respond_error|local_error|build_error_response)\s*\(")
# Calls that pass on a reason decided elsewhere: respond_error's own body, and the parse-error
# answer, whose reasons come from http::error_answer (read separately below).
FORWARDING = {"status, reason, close_now, response_head_", "status, reason, true",
              "status, reason, false", "answer.status, answer.reason, true"}


RAW_ANSWER = re.compile(r'"HTTP/1\.1 (\d{3})[^"]*"(?:\s*"[^"]*")*?\s*"X-Sluice-Error: ([\w-]+)', re.I)


def code_reasons(root, problems):
    """{(status, reason): 'file:line'} for every generated answer proxy/ can send."""
    found = {}
    answer_tables = 0
    for path, raw in sources(root):
        text = strip_comments(raw)
        for m in ERROR_CALL.finditer(text):
            line_start = text.rfind("\n", 0, m.start()) + 1
            before = re.sub(r"(?:\w+::)+$", "", text[line_start : m.start()]).rstrip()
            words = re.findall(r"[\w:<>&*]+$", before)
            if words and words[0] not in ("return",):
                continue  # a declaration or definition: `void respond_error(int status, ...)`
            args = call_args(text, m.end() - 1)
            where = f"{os.path.relpath(path, root)}:{line_of(text, m.start())}"
            if args is None:
                problems.add(path, line_of(text, m.start()), f"cannot read the call to {m.group(1)}")
                continue
            flat = " ".join(args.split())
            literals = [s for s in STRING.findall(args)]
            status = re.match(r"\s*(\d{3})\s*,", args)
            if not literals and flat in FORWARDING:
                continue
            if not status or not literals or not all(REASON.match(s) for s in literals):
                problems.add(path, line_of(text, m.start()),
                             f"{m.group(1)}({flat}): cannot tell its status and x-sluice-error "
                             "reason (expected a status literal and reason literals; teach "
                             "tests/docs/check_docs.py the new form)")
                continue
            for reason in literals:
                found.setdefault((int(status.group(1)), reason), where)
        # Answers written out whole as adjacent string literals ("HTTP/1.1 400 ..." "X-Sluice-Error:
        # reason"), such as the plaintext answer of a TLS port.
        for m in RAW_ANSWER.finditer(text):
            where = f"{os.path.relpath(path, root)}:{line_of(text, m.start())}"
            found.setdefault((int(m.group(1)), m.group(2)), where)
        # http::error_answer: the parse errors' {status, "reason"} pairs.
        for m in re.finditer(r"\bErrorAnswer\s+error_answer\s*\([^)]*\)\s*\{", text):
            body = text[m.end() :]
            depth, end = 1, 0
            for end, c in enumerate(body):
                depth += c == "{"
                depth -= c == "}"
                if depth == 0:
                    break
            answer_tables += 1
            for pair in re.finditer(r'\{\s*(\d{3})\s*,\s*"([^"]+)"\s*\}', body[:end]):
                where = f"{os.path.relpath(path, root)}:{line_of(text, m.end() + pair.start())}"
                found.setdefault((int(pair.group(1)), pair.group(2)), where)
    if answer_tables != 1:
        problems.add(os.path.join(root, "proxy/http"), 0,
                     f"expected one definition of http::error_answer, found {answer_tables}")
    if len(found) < 10:
        problems.add(os.path.join(root, "proxy"), 0,
                     f"found only {len(found)} x-sluice-error reasons: the extraction is broken")
    return found


def marked_table(path, text, marker, problems):
    """[(line, cells)] of the table rows between <!-- marker:begin --> and <!-- marker:end -->."""
    begin = re.search(r"<!--\s*" + re.escape(marker) + r":begin\b.*?-->", text)
    end = re.search(r"<!--\s*" + re.escape(marker) + r":end\b.*?-->", text)
    if not begin or not end or end.start() < begin.end():
        problems.add(path, 0, f"no <!-- {marker}:begin --> ... <!-- {marker}:end --> table")
        return []
    rows = []
    first = line_of(text, begin.end())
    for n, line in enumerate(text[begin.end() : end.start()].split("\n"), first):
        line = line.strip()
        if not line.startswith("|") or re.match(r"^\|[\s:|-]+\|$", line):
            continue
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells and cells[0] == "status":
            continue  # the header
        rows.append((n, cells))
    return rows


def check_reasons(root, problems):
    code = code_reasons(root, problems)
    path = os.path.join(root, "docs", "statuses.md")
    text = read(path)
    documented = {}
    for n, cells in marked_table(path, text, "reasons", problems):
        m = re.match(r"^(\d{3})$", cells[0])
        r = re.match(r"^`([^`]+)`$", cells[1]) if len(cells) > 1 else None
        if not m or not r or len(cells) != 5:
            problems.add(path, n, "expected | status | `reason` | when | connection | error rate |")
            continue
        key = (int(m.group(1)), r.group(1))
        if key in documented:
            problems.add(path, n, f"{key[0]} {key[1]} is listed twice")
        documented[key] = n
        if not all(cells[2:]):
            problems.add(path, n, f"{key[0]} {key[1]}: a cell is empty")
    for key, where in sorted(code.items()):
        if key not in documented:
            problems.add(path, 0, f"{key[0]} `{key[1]}` (answered at {where}) is not in the table")
    for key, n in sorted(documented.items(), key=lambda kv: kv[1]):
        if key not in code:
            problems.add(path, n, f"{key[0]} `{key[1]}` is not answered anywhere in proxy/")


# ---- admin statuses ----

ADMIN_STATUS = [
    re.compile(r"\b(?:api_error|refuse)\s*\(\s*(\d{3})\b"),  # JSON errors
    re.compile(r"\{\s*(\d{3})\s*,\s*\"application/json\""),  # literal replies
    re.compile(r"\?\s*\d{3}\s*:\s*(\d{3})\b"),  # ok ? 200 : 503
]


def check_admin_statuses(root, problems):
    code = {}
    for path, raw in sources(root, {"admin", "control"}):
        text = strip_comments(raw)
        for pattern in ADMIN_STATUS:
            for m in pattern.finditer(text):
                status = int(m.group(1))
                if status >= 400:
                    code.setdefault(status, f"{os.path.relpath(path, root)}:{line_of(text, m.start())}")
    if len(code) < 5:
        problems.add(os.path.join(root, "proxy/admin"), 0,
                     f"found only {len(code)} admin error statuses: the extraction is broken")
    path = os.path.join(root, "docs", "statuses.md")
    documented = {}
    for n, cells in marked_table(path, read(path), "admin-statuses", problems):
        if not re.match(r"^\d{3}$", cells[0]) or len(cells) != 2 or not cells[1]:
            problems.add(path, n, "expected | status | when |")
            continue
        documented[int(cells[0])] = n
    for status, where in sorted(code.items()):
        if status not in documented:
            problems.add(path, 0, f"admin status {status} (answered at {where}) is not in the table")
    for status, n in sorted(documented.items()):
        if status not in code:
            problems.add(path, n, f"admin status {status} is not answered anywhere in proxy/admin/ "
                                  "or proxy/control/")


# ---- config keys ----

def accepted_keys(root, problems):
    """{key: 'file:line'} of every key the loader and the shift plan accept."""
    keys = {}
    loader = os.path.join(root, "proxy", "config", "loader.cpp")
    text = strip_comments(read(loader))
    calls = 0
    for m in re.finditer(r"\bcheck_keys\s*\(", text):
        args = call_args(text, m.end() - 1)
        brace = re.search(r"\{(.*?)\}", args or "", re.S)
        if not brace:
            continue  # the definition: check_keys(const toml::table& t, ...)
        calls += 1
        for k in STRING.findall(brace.group(1)):
            keys.setdefault(k, f"proxy/config/loader.cpp:{line_of(text, m.start())}")
    if calls < 10:
        problems.add(loader, 0, f"found only {calls} check_keys lists: the extraction is broken")
    plan = os.path.join(root, "proxy", "config", "shift_plan.cpp")
    text = strip_comments(read(plan))
    for name in ("kTop", "kGuard"):
        m = re.search(r"\b" + name + r"\s*=\s*\{(.*?)\};", text, re.S)
        if not m:
            problems.add(plan, 0, f"no {name} key set: the extraction is broken")
            continue
        for k in STRING.findall(m.group(1)):
            keys.setdefault(k, f"proxy/config/shift_plan.cpp:{line_of(text, m.start())}")
    return keys


def key_rows(path, text):
    """{key: line} of the first cells of every table whose header starts with | key |."""
    rows, in_table = {}, False
    for n, line in enumerate(text.split("\n"), 1):
        s = line.strip()
        if not s.startswith("|"):
            in_table = False
            continue
        cells = [c.strip() for c in s.strip("|").split("|")]
        if cells[0] == "key":
            in_table = True
            continue
        if not in_table or re.match(r"^[\s:-]*$", cells[0]):
            continue
        rows.setdefault(cells[0], n)
    return rows


def toml_mentions(text):
    """Keys that TOML text (comments included) assigns (`key =`, `{ key =`) or names in a table
    header (`[functions.f.latest]`, `[[routes]]`): mere words in comments do not count."""
    keys = set(re.findall(r"(?:^|[\s{,#])([A-Za-z_][\w-]*)\s*=", text, re.M))
    for header in re.findall(r"\[\[?\s*([\w$.\"-]+)\s*\]\]?", text):
        keys.update(part.strip('"') for part in header.split("."))
    return keys


def check_config_keys(root, problems):
    keys = accepted_keys(root, problems)
    path = os.path.join(root, "docs", "configuration.md")
    rows = key_rows(path, read(path))
    documented = {}
    for cell, n in rows.items():
        m = re.match(r"^`([A-Za-z_][\w-]*)`$", cell)
        if not m:
            problems.add(path, n, f"a key table's first cell must be one `key`, not {cell}")
            continue
        documented[m.group(1)] = n
    example = os.path.join(root, "config", "sluice.toml")
    example_keys = toml_mentions(read(example))
    for key, where in sorted(keys.items()):
        if key not in documented:
            problems.add(path, 0, f"key `{key}` (accepted at {where}) has no row in a key table")
        if key not in example_keys:
            problems.add(example, 0, f"key `{key}` (accepted at {where}) is not mentioned, "
                                     "not even in a comment (expected `key = ...` or a table "
                                     "header naming it)")
    for key, n in sorted(documented.items(), key=lambda kv: kv[1]):
        if key not in keys:
            problems.add(path, n, f"key `{key}` is not accepted by the loader or the shift plan")


# ---- links ----

def slug(heading):
    """GitHub's anchor for a heading text."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(text):
    out, seen = set(), {}
    in_code = False
    for line in text.split("\n"):
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            out.add(base if count == 0 else f"{base}-{count}")
    return out


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def check_links(root, problems):
    pages = [os.path.join(root, "README.md")]
    docs = os.path.join(root, "docs")
    if not os.path.isdir(docs):
        problems.add(docs, 0, "no docs/ folder")
        return
    pages += sorted(os.path.join(docs, f) for f in os.listdir(docs) if f.endswith(".md"))
    for page in pages:
        text = read(page)
        for n, line in enumerate(text.split("\n"), 1):
            if "DESIGN.md" in line:
                problems.add(page, n, "points at DESIGN.md, which users do not have")
        in_code = False
        for n, line in enumerate(text.split("\n"), 1):
            if line.startswith("```"):
                in_code = not in_code
            if in_code:
                continue
            for m in LINK.finditer(line):
                target = m.group(1)
                if re.match(r"^[a-z]+:", target):
                    continue  # http:, https:, mailto:
                file_part, _, anchor = target.partition("#")
                dest = os.path.normpath(os.path.join(os.path.dirname(page), file_part)) \
                    if file_part else page
                if not os.path.exists(dest):
                    problems.add(page, n, f"link {target}: {os.path.relpath(dest, root)} does not exist")
                    continue
                if anchor and dest.endswith(".md") and anchor not in anchors(read(dest)):
                    problems.add(page, n, f"link {target}: no heading #{anchor} in "
                                          f"{os.path.relpath(dest, root)}")


# ---- layout ----

def tracked_dirs(root):
    """Every tracked directory (relative, '/'-separated); the file tree if git is not there."""
    files = None
    if os.path.exists(os.path.join(root, ".git")):
        try:
            out = subprocess.run(["git", "-C", root, "ls-files"], capture_output=True, text=True,
                                 check=True).stdout
            files = [f for f in out.split("\n") if f]
        except (OSError, subprocess.CalledProcessError):
            files = None
    if files is None:
        files = []
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith((".", "build"))]
            for f in filenames:
                files.append(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/"))
    dirs = set()
    for f in files:
        parts = f.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return dirs


def check_layout(root, problems):
    path = os.path.join(root, "README.md")
    text = read(path)
    m = re.search(r"^## Layout\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        problems.add(path, 0, "no ## Layout section")
        return
    first = line_of(text, m.start(1))
    rows = {}
    for n, line in enumerate(m.group(1).split("\n"), first):
        cm = re.match(r"^\|\s*`([^`]+)`\s*\|(.*)\|\s*$", line)
        if cm:
            rows[cm.group(1)] = (n, cm.group(2))
    if not rows:
        problems.add(path, first, "the Layout table has no rows")
        return
    for p, (n, _) in rows.items():
        if not os.path.exists(os.path.join(root, p)):
            problems.add(path, n, f"`{p}` does not exist")
    dirs = tracked_dirs(root)
    listed = {p.rstrip("/") for p in rows}
    for d in sorted(dirs):
        if d.startswith("."):
            continue
        top = d.split("/")[0]
        if "/" not in d and d not in listed and not any(p.startswith(d + "/") for p in listed):
            problems.add(path, first, f"top-level folder `{d}/` is not in the Layout table")
        if top == "tests" and d.count("/") == 1 and d not in listed:
            problems.add(path, first, f"`{d}/` is not in the Layout table")
    proxy = rows.get("proxy/")
    if not proxy:
        problems.add(path, first, "no `proxy/` row in the Layout table")
        return
    n, cell = proxy
    named = set(re.findall(r"`([a-z_]+)/`", cell))
    actual = {d.split("/")[1] for d in dirs if d.startswith("proxy/") and d.count("/") == 1}
    for d in sorted(actual - named):
        problems.add(path, n, f"the proxy/ row does not name `{d}/`")
    for d in sorted(named - actual):
        problems.add(path, n, f"the proxy/ row names `{d}/`, which is not a folder of proxy/")


# ---- examples ----

def check_examples(root, problems, sluice):
    path = os.path.join(root, "docs", "configuration.md")
    blocks = re.findall(r"^```toml\n(.*?)^```", read(path), re.S | re.M)
    if len(blocks) < 5:
        problems.add(path, 0, f"found only {len(blocks)} ```toml examples")
        return
    if not sluice or not os.access(sluice, os.X_OK):
        problems.add(path, 0, f"examples: no sluice binary to check them with ({sluice})")
        return
    with tempfile.TemporaryDirectory() as tmp:
        # Certificates the examples name are made here (a throwaway self-signed pair each), so the
        # TLS examples are checked like the rest, files included.
        text = "\n".join(blocks)
        for cert, key in re.findall(r'cert\s*=\s*"([^"/]+)"\s*,\s*key\s*=\s*"([^"/]+)"', text):
            made = subprocess.run(
                ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-nodes", "-days", "365", "-subj", "/CN=example.test",
                 "-keyout", os.path.join(tmp, key), "-out", os.path.join(tmp, cert)],
                capture_output=True, text=True, timeout=30)
            if made.returncode != 0:
                problems.add(path, 0, f"examples: cannot make {cert} with openssl: {made.stderr}")
        example = os.path.join(tmp, "examples.toml")
        with open(example, "w", encoding="utf-8") as f:
            f.write("\n".join(blocks))
        r = subprocess.run([sluice, "check", "-c", example], capture_output=True, text=True,
                           timeout=30)
        if r.returncode != 0:
            for line in (r.stdout + r.stderr).strip().split("\n"):
                problems.add(path, 0, f"examples put together: {line}")


RUN = {"reasons": check_reasons, "admin-statuses": check_admin_statuses,
       "config-keys": check_config_keys, "links": check_links, "layout": check_layout,
       "examples": check_examples}


def run(root, checks, sluice=None):
    problems = Problems(root)
    for c in checks:
        if c == "examples":
            check_examples(root, problems, sluice)
        else:
            RUN[c](root, problems)
    return problems.items


# ---- self-test ----

def self_test(root, sluice=None):
    """Breaks a copy of the tree in one way per check and requires that check to fail."""
    cases = [
        ("reasons", "proxy/worker/client_conn.cpp", '"no-route"', '"no-route-at-all"',
         "no-route-at-all"),
        ("reasons", "docs/statuses.md", "| 404 | `no-route` |", "| 404 | `no-route-x` |",
         "not answered anywhere"),
        ("reasons", "proxy/worker/client_conn.cpp", 'respond_error(408, "header-timeout"',
         'respond_error(kTimeoutStatus, "header-timeout"', "cannot tell"),
        ("admin-statuses", "docs/statuses.md", "| 431 | the request head", "| 432 | the request head",
         "431"),
        ("config-keys", "docs/configuration.md", "| `drain_timeout` |", "| `drain_timeuot` |",
         "drain_timeout"),
        ("config-keys", "config/sluice.toml", "hook_timeout", "hook_time_out", "hook_timeout"),
        ("config-keys", "proxy/config/shift_plan.cpp", '"hook_timeout"};',
         '"hook_timeout", "new_key"};', "new_key"),
        ("links", "README.md", "(docs/statuses.md)", "(DESIGN.md)", "DESIGN.md"),
        ("links", "docs/admin-api.md", "statuses.md#the-admin-apis-answers",
         "statuses.md#no-such-heading", "no-such-heading"),
        ("layout", "README.md", "`cli/` (client commands), ", "", "cli/"),
    ]
    if sluice:
        cases.append(("examples", "docs/configuration.md", 'max_body_size = 10485760',
                      'max_body_size = "10MiB"', "max_body_size"))
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for part in ("proxy", "docs", "config", "tests"):
            shutil.copytree(os.path.join(root, part), os.path.join(tmp, part),
                            ignore=shutil.ignore_patterns("build*", "__pycache__"))
        for f in ("README.md", "ARCHITECTURE.md"):
            shutil.copy(os.path.join(root, f), tmp)
        # The copy has no .git: the layout check reads its file tree, where these hold files.
        for d in ("bench", "docker", "packaging", "scripts"):
            os.makedirs(os.path.join(tmp, d))
            open(os.path.join(tmp, d, "placeholder"), "w").close()
        for check, rel, old, new, expect in cases:
            target = os.path.join(tmp, rel)
            text = read(target)
            if old not in text:
                failures.append(f"self-test setup: {old!r} not found in {rel}")
                continue
            before = run(tmp, [check], sluice)
            if before:
                failures.append(f"self-test: the unbroken copy fails {check}: {before[0]}")
                continue
            with open(target, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
            after = run(tmp, [check], sluice)
            with open(target, "w", encoding="utf-8") as f:
                f.write(text)
            if not any(expect in p for p in after):
                failures.append(f"self-test: {check} did not catch {rel}: {old!r} -> {new!r} "
                                f"(got {after})")
            else:
                print(f"ok: {check} catches {rel}: {old!r} -> {new!r}: {after[0]}")
    for f in failures:
        print(f, file=sys.stderr)
    return 1 if failures else 0


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    root = os.path.abspath(argv[1])
    if argv[2] == "--self-test":
        return self_test(root, argv[4] if argv[3:4] == ["--sluice"] and len(argv) > 4 else None)
    checks, sluice = argv[2:], None
    if "--sluice" in checks:
        i = checks.index("--sluice")
        sluice = checks[i + 1] if i + 1 < len(checks) else None
        checks = checks[:i] + checks[i + 2 :]
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        sys.exit(f"unknown check {unknown[0]} (expected: {', '.join(CHECKS)})")
    problems = run(root, checks, sluice)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check_docs: {len(problems)} problem(s); docs/ must say what the code does",
              file=sys.stderr)
        return 1
    print(f"check_docs: {', '.join(checks)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
