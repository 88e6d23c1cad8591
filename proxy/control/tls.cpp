// TLS contexts from the config (see tls.h).
#include "control/tls.h"

#include <sys/stat.h>

#include <utility>

namespace sluice::control {
namespace {

using Field = net::TlsProblem::Field;

config::SourcePos position_of(const config::TlsSpec& tls, const net::TlsProblem& p) {
  const bool has_pair = p.pair < tls.certificates.size();
  switch (p.field) {
    case Field::kCert:
      return has_pair ? tls.certificates[p.pair].cert_pos : tls.pos;
    case Field::kKey:
      return has_pair ? tls.certificates[p.pair].key_pos : tls.pos;
    case Field::kCiphers:
      return tls.ciphers_pos.line ? tls.ciphers_pos : tls.pos;
    case Field::kCiphersuites:
      return tls.ciphersuites_pos.line ? tls.ciphersuites_pos : tls.pos;
    case Field::kProtocols:
      return tls.min_version_pos.line ? tls.min_version_pos : tls.pos;
    default:
      return tls.pos;
  }
}

config::Diagnostic diagnostic(const config::Config& cfg, const config::ListenSpec& l,
                              const net::TlsProblem& p) {
  return {cfg.source, position_of(*l.tls, p), "listen " + l.address.text + " tls: " + p.message};
}

}  // namespace

TlsBuild build_tls(const config::Config& cfg, std::shared_ptr<net::TicketKeyRing> ticket_keys,
                   int64_t now_s) {
  TlsBuild out;
  auto tls = std::make_shared<net::TlsContexts>();
  for (const config::ListenSpec& l : cfg.listen) {
    if (!l.tls) continue;
    net::ServerOptions o;
    for (const config::TlsPairSpec& pair : l.tls->certificates)
      o.certificates.push_back({pair.cert, pair.key});
    o.min_version =
        l.tls->min_version == "TLSv1.3" ? net::TlsVersion::kTls13 : net::TlsVersion::kTls12;
    if (!l.tls->ciphers.empty()) o.ciphers = l.tls->ciphers;
    if (!l.tls->ciphersuites.empty()) o.ciphersuites = l.tls->ciphersuites;
    o.ticket_keys = ticket_keys;
    o.release_buffers = true;
    if (l.http2) o.alpn = {"h2", "http/1.1"};
    net::ServerBuild b = net::build_server_context(o, now_s);
    for (const net::TlsProblem& p : b.errors) out.errors.push_back(diagnostic(cfg, l, p));
    for (const net::TlsProblem& p : b.warnings) out.warnings.push_back(diagnostic(cfg, l, p));
    if (b.context) tls->listeners.push_back({l.address.text, std::move(b.context)});
  }
  // Upstreams: one client context per distinct spec, shared by the versions that use it.
  auto upstream = [&](const config::VersionSpec& v, const std::string& label) {
    if (!v.settings.tls) return;
    const config::UpstreamTlsSpec& spec = *v.settings.tls;
    const std::string identity = spec.identity();
    if (tls->upstream(identity)) return;
    net::ClientOptions o;
    o.verify = spec.verify;
    o.ca = spec.ca;
    o.cert = spec.cert;
    o.key = spec.key;
    if (spec.h2) o.alpn = {"h2"};  // an HTTP/2 endpoint must choose h2 (RFC 9113 §3.2)
    net::ClientBuild b = net::build_client_context(o, now_s);
    auto where = [&](const net::TlsProblem& p) {
      config::SourcePos pos = spec.pos;
      if (p.field == Field::kCa && spec.ca_pos.line) pos = spec.ca_pos;
      if (p.field == Field::kCert && spec.cert_pos.line) pos = spec.cert_pos;
      if (p.field == Field::kKey && spec.key_pos.line) pos = spec.key_pos;
      return config::Diagnostic{cfg.source, pos, "version " + label + " tls: " + p.message};
    };
    for (const net::TlsProblem& p : b.errors) out.errors.push_back(where(p));
    for (const net::TlsProblem& p : b.warnings) out.warnings.push_back(where(p));
    if (b.context) tls->upstreams.push_back({identity, std::move(b.context)});
  };
  for (const config::FunctionSpec& fn : cfg.functions) {
    if (fn.latest) upstream(*fn.latest, fn.name + ":" + config::kLatest);
    for (const auto& [number, v] : fn.versions) upstream(v, fn.name + ":" + std::to_string(number));
  }
  if (out.errors.empty()) out.tls = std::move(tls);
  return out;
}

namespace {

// Every TLS file the config names: listeners' pairs, upstreams' CAs and client pairs.
std::vector<std::string> tls_files(const config::Config& cfg) {
  std::vector<std::string> files;
  for (const config::ListenSpec& l : cfg.listen) {
    if (!l.tls) continue;
    for (const config::TlsPairSpec& pair : l.tls->certificates) {
      files.push_back(pair.cert);
      files.push_back(pair.key);
    }
  }
  auto upstream = [&](const config::VersionSpec& v) {
    if (!v.settings.tls) return;
    for (const std::string* f : {&v.settings.tls->ca, &v.settings.tls->cert, &v.settings.tls->key})
      if (!f->empty()) files.push_back(*f);
  };
  for (const config::FunctionSpec& fn : cfg.functions) {
    if (fn.latest) upstream(*fn.latest);
    for (const auto& [number, v] : fn.versions) upstream(v);
  }
  return files;
}

}  // namespace

std::string tls_files_stamp(const config::Config& cfg) {
  std::string stamp;
  for (const std::string& file : tls_files(cfg)) {
    struct stat st {};
    stamp += file;
    if (::stat(file.c_str(), &st) == 0)
      stamp += ":" + std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
               std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ino);
    stamp += ";";
  }
  return stamp;
}

bool names_tls_file(const config::Config& cfg, const std::string& dir, const std::string& name) {
  for (const std::string& file : tls_files(cfg)) {
    const size_t slash = file.rfind('/');
    const std::string base = slash == std::string::npos ? file : file.substr(slash + 1);
    const std::string parent = slash == std::string::npos ? "" : file.substr(0, slash);
    if (base == name && (parent.empty() || parent == dir || parent == "." || dir.empty()))
      return true;
  }
  return false;
}

}  // namespace sluice::control
