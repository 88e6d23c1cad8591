// The state directory as a Store (see local_store.h).
#include "control/local_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace sluice::control {
namespace {

using nlohmann::json;

// The documents a state directory holds, each as <key>.json.
constexpr const char* kDocuments[] = {kStateDoc, kShiftsDoc};

std::string errno_text(const char* what, const std::string& path) {
  return std::string(what) + " " + path + ": " + std::strerror(errno);
}

bool write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// The sequence number of the last record in audit.jsonl that has one (0 if none), and whether
// the file ends with a newline. Reads from the end: only the tail matters.
bool audit_tail(const std::string& path, uint64_t* last_seq, bool* ends_with_newline,
                std::string* error) {
  *last_seq = 0;
  *ends_with_newline = true;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return true;
    *error = errno_text("cannot read", path);
    return false;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    *error = errno_text("cannot read", path);
    ::close(fd);
    return false;
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  std::string tail;
  for (uint64_t want = 64 * 1024;; want *= 4) {
    const uint64_t take = std::min(want, size);
    tail.assign(take, '\0');
    size_t got = 0;
    while (got < take) {
      ssize_t n = ::pread(fd, tail.data() + got, take - got, static_cast<off_t>(size - take + got));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    tail.resize(got);
    if (!tail.empty()) *ends_with_newline = tail.back() == '\n';
    // Whole lines only: the first one may be cut unless the tail is the whole file.
    size_t end = tail.size();
    while (end > 0) {
      size_t start = tail.rfind('\n', end - 1);
      const bool whole = start != std::string::npos || take == size;
      start = start == std::string::npos ? 0 : start + 1;
      if (!whole) break;
      json j = json::parse(std::string_view(tail).substr(start, end - start), nullptr, false);
      if (j.is_object() && j.contains("seq") && j["seq"].is_number_unsigned()) {
        *last_seq = j["seq"].get<uint64_t>();
        ::close(fd);
        return true;
      }
      if (start == 0) break;
      end = start - 1;
    }
    if (take == size) break;
  }
  ::close(fd);
  return true;
}

}  // namespace

bool write_file_atomic(const std::string& path, std::string_view content, std::string* error) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot create", tmp);
    return false;
  }
  if (!write_all(fd, content) || ::fsync(fd) != 0) {
    *error = errno_text("cannot write", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return false;
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *error = errno_text("cannot rename onto", path);
    ::unlink(tmp.c_str());
    return false;
  }
  std::string dir = std::filesystem::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0 || ::fsync(dfd) != 0) {
    *error = errno_text("cannot fsync directory", dir);
    if (dfd >= 0) ::close(dfd);
    return false;
  }
  ::close(dfd);
  return true;
}

LocalStore::LocalStore(std::string dir) : dir_(std::move(dir)) {}

json LocalStore::describe() const {
  return {{"kind", kind()}, {"durable", true}, {"dir", dir_}};
}

Document LocalStore::get(const std::string& key) const {
  auto it = docs_.find(key);
  if (it != docs_.end()) return it->second;
  Document absent;
  absent.key = key;
  absent.origin = path_of(key);
  return absent;
}

bool LocalStore::load(std::string* error, std::vector<std::string>* notes) {
  docs_.clear();
  unaudited_.clear();
  next_seq_ = 1;
  repaired_ = 0;
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) {
    *error = "cannot create state directory " + dir_ + ": " + ec.message();
    return false;
  }
  uint64_t carried_seq = 0;          // the highest last_seq a document carries
  std::map<uint64_t, json> carried;  // records the documents carry, by seq
  for (const char* key : kDocuments) {
    const std::string path = path_of(key);
    if (!std::filesystem::exists(path, ec)) continue;
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      *error = errno_text("cannot read", path);
      return false;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    Document& d = docs_[key];
    d.key = key;
    d.origin = path;
    d.version = 1;
    json doc = json::parse(ss.str(), nullptr, false);
    if (doc.is_discarded()) {
      d.unreadable = "not valid JSON";
      continue;
    }
    if (doc.is_object() && doc.contains("audit")) {
      const json& a = doc["audit"];
      if (a.is_object() && a.contains("last_seq") && a["last_seq"].is_number_unsigned())
        carried_seq = std::max(carried_seq, a["last_seq"].get<uint64_t>());
      if (a.is_object() && a.contains("unaudited") && a["unaudited"].is_array())
        for (const json& line : a["unaudited"])
          if (line.is_object() && line.contains("seq") && line["seq"].is_number_unsigned())
            carried.emplace(line["seq"].get<uint64_t>(), line);
      doc.erase("audit");
    }
    d.value = std::move(doc);
  }
  uint64_t audited_seq = 0;
  bool newline = true;
  if (!audit_tail(audit_path(), &audited_seq, &newline, error)) return false;
  next_seq_ = std::max(carried_seq, audited_seq) + 1;
  for (const auto& [seq, line] : carried)
    if (seq > audited_seq) unaudited_.push_back(line);
  if (unaudited_.empty()) return true;
  // A crash came between a document's rename and the audit append: add what is missing.
  if (!newline) {  // a torn last line: end it, so the repaired records start on their own line
    int fd = ::open(audit_path().c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
      (void)write_all(fd, "\n");
      ::close(fd);
    }
  }
  std::string append_error;
  if (append(unaudited_, &append_error)) {
    repaired_ = unaudited_.size();
    if (notes)
      notes->push_back("appended " + std::to_string(unaudited_.size()) +
                       " record(s) of a change applied just before the last stop (the process "
                       "ended between the state write and the audit append)");
    unaudited_.clear();
  } else if (notes) {
    // They stay in unaudited_ and go out with the next commit.
    notes->push_back(append_error + " (" + std::to_string(unaudited_.size()) +
                     " record(s) of the last run kept, retried with the next change)");
  }
  return true;
}

bool LocalStore::append(const std::vector<json>& lines, std::string* error) const {
  if (lines.empty()) return true;
  std::string text;
  for (const json& line : lines) text += dump_json(line) + "\n";
  int fd = ::open(audit_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    *error = errno_text("cannot open", audit_path());
    return false;
  }
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  if (!ok) *error = errno_text("cannot append to", audit_path());
  ::close(fd);
  return ok;
}

CommitResult LocalStore::commit_now(Change change) {
  CommitResult r;
  for (const Put& p : change.puts) {
    if (!p.value.is_object()) {  // the file carries the audit records under "audit"
      r.status = CommitResult::Status::kFailed;
      r.error = "document " + p.key + " is not a JSON object";
      return r;
    }
  }
  if (std::optional<CommitResult> stale =
          first_conflict(change.puts, [this](const std::string& key) { return get(key).version; }))
    return *stale;
  std::vector<json> lines = unaudited_;
  uint64_t seq = next_seq_;
  for (const AuditEntry& e : change.audits) lines.push_back(audit_record(e, seq++));
  if (!change.audits.empty()) {
    r.first_seq = next_seq_;
    r.last_seq = seq - 1;
  }
  if (change.puts.empty()) {
    // Nothing carries the records: the append is the commit.
    std::string err;
    if (!append(lines, &err)) {
      r = {};
      r.status = CommitResult::Status::kFailed;
      r.error = err;
      return r;
    }
    next_seq_ = seq;
    unaudited_.clear();
    return r;
  }
  for (size_t i = 0; i < change.puts.size(); ++i) {
    Put& p = change.puts[i];
    json doc = p.value;
    doc["audit"] = {{"last_seq", seq - 1}, {"unaudited", lines}};
    std::string err;
    if (!write_file_atomic(path_of(p.key), dump_json(doc, 1) + "\n", &err)) {
      const bool none_written = i == 0;
      r = {};
      r.status = CommitResult::Status::kFailed;
      r.error = err;
      if (none_written) return r;
      r.error += " (after writing " + std::to_string(i) + " of " +
                 std::to_string(change.puts.size()) + " documents)";
      break;
    }
    Document& d = docs_[p.key];
    d.key = p.key;
    d.origin = path_of(p.key);
    d.value = std::move(p.value);
    d.unreadable.clear();
    if (r.committed()) r.versions[p.key] = d.version + 1;
    ++d.version;
    // The records are durable from here on (carried by this file).
    next_seq_ = seq;
  }
  std::string err;
  if (append(lines, &err)) {
    unaudited_.clear();
  } else {
    unaudited_ = std::move(lines);
    if (r.committed()) r.audit_lag = err;
  }
  return r;
}

void LocalStore::commit(Change change, CommitDone done) {
  CommitResult r = commit_now(std::move(change));
  if (done) done(std::move(r));
}

}  // namespace sluice::control
