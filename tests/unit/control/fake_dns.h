// A fake DNS for control-plane tests: a Resolver whose asynchronous lookups wait until the test
// answers them, and a fixture whose config names a host only the fake resolves. Shared by the
// control and admin unit tests.
#pragma once

#include <arpa/inet.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "control/control.h"
#include "control/resolver.h"

namespace sluice::control::test {

// What the fake DNS answers: name -> IPv4 text, or "" for a failure. Lookups asked for
// asynchronously wait in `pending` until answer() runs them.
struct FakeDns {
  std::map<std::string, std::string> answers;
  int blocking = 0;  // resolve_now calls
  int async = 0;     // resolve calls
  std::vector<std::pair<std::vector<std::string>, Resolver::Done>> pending;

  routing::HostAddresses lookup(const std::vector<std::string>& hosts) const {
    routing::HostAddresses out;
    for (const std::string& h : hosts) {
      routing::ResolvedHost r;
      auto it = answers.find(h);
      auto* v4 = reinterpret_cast<sockaddr_in*>(&r.addr);
      if (it == answers.end() || it->second.empty() ||
          inet_pton(AF_INET, it->second.c_str(), &v4->sin_addr) != 1) {
        r.error = "Name or service not known";
      } else {
        v4->sin_family = AF_INET;
        r.len = sizeof(sockaddr_in);
      }
      out[h] = r;
    }
    return out;
  }
  // Answers every waiting lookup with the current answers.
  void answer() {
    auto waiting = std::move(pending);
    pending.clear();
    for (auto& [hosts, done] : waiting) done(lookup(hosts));
  }
};

class FakeResolver final : public Resolver {
 public:
  explicit FakeResolver(FakeDns& dns) : dns_(dns) {}
  void resolve(const std::vector<std::string>& hosts, Done done) override {
    ++dns_.async;
    dns_.pending.emplace_back(hosts, std::move(done));
  }
  routing::HostAddresses resolve_now(const std::vector<std::string>& hosts) override {
    ++dns_.blocking;
    return dns_.lookup(hosts);
  }

 private:
  FakeDns& dns_;  // outlives the Control under test
};

struct DnsFixture {
  std::string dir, path;
  FakeDns dns;
  std::shared_ptr<const routing::RoutingTable> published;
  int publishes = 0;

  DnsFixture() {
    char tmpl[] = "/tmp/sluice-resolve-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/sluice.toml";
    write(toml());
    dns.answers["api.internal"] = "10.0.0.5";
  }
  ~DnsFixture() { std::filesystem::remove_all(dir); }
  std::string toml(const std::string& v4_endpoint = "127.0.0.1:7004") const {
    return "[functions.checkout.versions.3]\nendpoints = [\"api.internal:7003\"]\n"
           "[functions.checkout.versions.4]\nendpoints = [\"" +
           v4_endpoint +
           "\"]\n"
           "[functions.checkout.aliases.prod]\ntraffic = { \"3\" = 100 }\n"
           "[[routes]]\ntarget = \"checkout:prod\"\n";
  }
  void write(const std::string& text) const { std::ofstream(path) << text; }
  // A Control using this fake DNS: blocking at init(), then asynchronous.
  std::unique_ptr<Control> control() {
    auto c = std::make_unique<Control>(path);
    c->set_resolver(std::make_unique<FakeResolver>(dns));
    return c;
  }
  void attach(Control& c) {
    c.set_publisher([this](std::shared_ptr<const routing::RoutingTable> t) {
      published = std::move(t);
      ++publishes;
    });
  }
};

}  // namespace sluice::control::test
