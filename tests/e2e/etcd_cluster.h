// A real etcd cluster for tests: N members (3 by default) on loopback with ports chosen free at
// run time and data in a private temp dir, started, stopped, killed and restarted by PID, with
// blocking gateway helpers (libcurl) that do not depend on the client under test.
#pragma once

#include <sys/types.h>

#include <csignal>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sluice::e2e {

// The etcd server binary: $SLUICE_ETCD if set, else `etcd` on PATH; empty if there is none.
std::string etcd_binary();

struct EtcdClusterOptions {
  size_t members = 3;
  int start_timeout_ms = 30000;  // until every member reports healthy
  int heartbeat_ms = 100;        // etcd's defaults: a loaded test machine must not see
  int election_ms = 1000;        // spurious elections
  // Clients over TLS (https:// client URLs; peers stay plain): the member's certificate and key,
  // and with `client_ca` set, clients must show a certificate it signed (--client-cert-auth).
  // The harness's own calls then trust `ca` and show `client_cert`/`client_key`.
  std::string tls_cert, tls_key, client_ca;
  std::string ca, client_cert, client_key;
};

// Members are children of the test process: each gets PR_SET_PDEATHSIG(SIGKILL), so none
// outlives it (ctest's TIMEOUT bounds the process); the destructor SIGKILLs every member still
// running, reaps it and removes the data. Only processes this object started are signalled.
// Not thread-safe; call from the thread that created it (the parent-death signal follows the
// thread that forked).
class EtcdCluster {
 public:
  explicit EtcdCluster(EtcdClusterOptions options = {});
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // True once every member reported healthy; otherwise error() says why (with log tails).
  bool started() const { return started_; }
  const std::string& error() const { return error_; }

  size_t size() const { return members_.size(); }
  std::string client_url(size_t i) const;  // "http://127.0.0.1:PORT"
  std::vector<std::string> client_urls() const;
  uint16_t client_port(size_t i) const { return members_[i].client_port; }
  pid_t pid(size_t i) const { return members_[i].pid; }
  bool running(size_t i);

  // Sends `sig` to member i and waits for it to exit (SIGKILL after `timeout_ms`).
  bool kill(size_t i, int sig = SIGKILL, int timeout_ms = 10000);
  bool stop(size_t i) { return kill(i, SIGTERM); }
  // Starts member i again on its data dir and ports. Does not wait for health.
  bool restart(size_t i);
  // GET /health on member i says true (it has a leader and answers a linearizable read).
  bool healthy(size_t i);
  bool wait_healthy(size_t i, int timeout_ms);
  bool wait_all_healthy(int timeout_ms);

  // Blocking gateway calls to member i (its JSON answer; nullopt if none came or not 200).
  // `token`: an etcd auth token (/v3/auth/authenticate), sent as Authorization.
  std::optional<std::string> post(size_t i, const std::string& path, const std::string& body,
                                  long timeout_ms = 5000, const std::string& token = "");
  // Through the first healthy running member. put: the new revision.
  std::optional<int64_t> put(const std::string& key, const std::string& value);
  std::optional<int64_t> revision();
  bool compact(int64_t revision);
  // The index of the member that leads, if a running member knows one.
  std::optional<size_t> leader();

  std::string log_tail(size_t i, size_t bytes = 3000) const;
  const std::string& dir() const { return dir_; }

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    pid_t pid = -1;
    uint64_t member_id = 0;  // learned from /v3/maintenance/status
  };
  bool start_all(std::string* why);
  bool spawn(size_t i);
  void reap_all();
  std::optional<size_t> first_running_healthy();

  EtcdClusterOptions options_;
  std::string binary_;
  std::string dir_;
  std::string token_;
  std::vector<Member> members_;
  bool started_ = false;
  std::string error_;
};

}  // namespace sluice::e2e
