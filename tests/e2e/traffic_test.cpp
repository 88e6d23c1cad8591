// End-to-end: weighted version selection through the real sluice binary — random and exact
// shares, sticky keys, 0/100 weights, pinned routes and per-request overrides. The upstreams
// name themselves; the tests count who answered.
#include <cmath>
#include <map>
#include <string>

#include "e2e.h"

using namespace sluice::e2e;

namespace {

// Upstreams v1, v2, v3 serve versions 1, 2, 3 of function "shop".
struct ThreeVersions {
  Upstream v1{"v1"}, v2{"v2"}, v3{"v3"};
  ConfigText config(int workers = 2) const {
    ConfigText cfg;
    cfg.workers = workers;
    cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}, {"3", {v3.address()}}});
    return cfg;
  }
};

// Sends `n` GETs for `path` over one keep-alive connection and counts x-upstream. Checks that
// the version header names the version of the upstream that answered. `order` receives the
// answering upstream of each request when not null.
std::map<std::string, int> count_answers(const Sluice& s, const std::string& path, int n,
                                         std::vector<std::string>* order = nullptr,
                                         long* connects = nullptr) {
  CurlClient curl;
  std::map<std::string, int> hits;
  int mismatched = 0;
  long new_conns = 0;
  for (int i = 0; i < n; ++i) {
    HttpResult r = curl.get(s.url(path));
    std::string who =
        r.status == 200 ? r.header("x-upstream") : "status-" + std::to_string(r.status);
    ++hits[who];
    if (r.status == 200 && r.header("x-sluice-version") != "shop:" + who.substr(1)) ++mismatched;
    new_conns += r.new_connections;
    if (order) order->push_back(who);
  }
  CHECK(mismatched == 0);
  if (connects) *connects = new_conns;
  return hits;
}

double percent(int part, int total) {
  return 100.0 * part / total;
}

constexpr int kShareRequests = 10000;

}  // namespace

TEST_CASE("random selection splits 90/10 and 70/20/10 over 10000 requests within 1.5 points") {
  ThreeVersions up;
  ConfigText cfg = up.config();
  cfg.alias("shop", "canary", R"({ "1" = 90, "2" = 10 })")
      .alias("shop", "three", R"({ "1" = 70, "2" = 20, "3" = 10 })")
      .route("shop:canary", "/canary/")
      .route("shop:three", "/three/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);

  auto two = count_answers(s, "/canary/x", kShareRequests);
  CAPTURE(two["v1"]);
  CAPTURE(two["v2"]);
  CHECK(two["v1"] + two["v2"] == kShareRequests);
  CHECK(std::abs(percent(two["v1"], kShareRequests) - 90.0) <= 1.5);
  CHECK(std::abs(percent(two["v2"], kShareRequests) - 10.0) <= 1.5);

  auto three = count_answers(s, "/three/x", kShareRequests);
  CAPTURE(three["v1"]);
  CAPTURE(three["v2"]);
  CAPTURE(three["v3"]);
  CHECK(three["v1"] + three["v2"] + three["v3"] == kShareRequests);
  CHECK(std::abs(percent(three["v1"], kShareRequests) - 70.0) <= 1.5);
  CHECK(std::abs(percent(three["v2"], kShareRequests) - 20.0) <= 1.5);
  CHECK(std::abs(percent(three["v3"], kShareRequests) - 10.0) <= 1.5);
  CHECK(up.v1.requests() == static_cast<size_t>(two["v1"] + three["v1"]));
  CHECK(up.v3.requests() == static_cast<size_t>(three["v3"]));
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("exact selection splits 90/10 and 70/20/10 exactly in every window of 100") {
  ThreeVersions up;
  ConfigText cfg = up.config();
  cfg.alias("shop", "canary", R"({ "1" = 90, "2" = 10 })", "selection = \"exact\"")
      .alias("shop", "three", R"({ "1" = 70, "2" = 20, "3" = 10 })", "selection = \"exact\"")
      .route("shop:canary", "/canary/")
      .route("shop:three", "/three/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);

  std::vector<std::string> order;
  long connects = 0;
  auto two = count_answers(s, "/canary/x", kShareRequests, &order, &connects);
  REQUIRE(connects == 1);  // one connection, so one worker's round robin
  CHECK(two["v1"] == 9000);
  CHECK(two["v2"] == 1000);
  int bad_windows = 0;
  for (size_t w = 0; w + 100 <= order.size(); w += 100) {
    int v1 = 0;
    for (size_t i = w; i < w + 100; ++i) v1 += order[i] == "v1";
    bad_windows += v1 != 90;
  }
  CHECK(bad_windows == 0);

  order.clear();
  auto three = count_answers(s, "/three/x", kShareRequests, &order, &connects);
  REQUIRE(connects == 1);
  CHECK(three["v1"] == 7000);
  CHECK(three["v2"] == 2000);
  CHECK(three["v3"] == 1000);
  bad_windows = 0;
  for (size_t w = 0; w + 100 <= order.size(); w += 100) {
    std::map<std::string, int> c;
    for (size_t i = w; i < w + 100; ++i) ++c[order[i]];
    bad_windows += c["v1"] != 70 || c["v2"] != 20 || c["v3"] != 10;
  }
  CHECK(bad_windows == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("weights of 0 and 100 are exact and pinned routes always reach their version") {
  ThreeVersions up;
  ConfigText cfg = up.config();
  cfg.alias("shop", "prod", R"({ "1" = 100, "2" = 0 })")
      .route("shop:prod", "/")
      .route("shop:2", "/pinned/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  auto all = count_answers(s, "/x", 2000);
  CHECK(all["v1"] == 2000);
  CHECK(all.size() == 1);
  auto pinned = count_answers(s, "/pinned/x", 200);
  CHECK(pinned["v2"] == 200);
  CHECK(pinned.size() == 1);
  CHECK(up.v2.requests() == 200);
  CHECK(up.v3.requests() == 0);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("the $LATEST version can be the target of an alias and of a pinned route") {
  Upstream v1("v1"), latest("latest");
  ConfigText cfg;
  cfg.function("shop", {{"1", {v1.address()}}, {"$LATEST", {latest.address()}}})
      .alias("shop", "dev", R"({ "$LATEST" = 100 })")
      .route("shop:dev", "/dev/")
      .route("shop:$LATEST", "/edge/")
      .route("shop:1", "/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  HttpResult dev = curl.get(s.url("/dev/x"));
  CHECK(dev.header("x-upstream") == "latest");
  CHECK(dev.header("x-sluice-version") == "shop:$LATEST");
  HttpResult edge = curl.get(s.url("/edge/x"));
  CHECK(edge.header("x-upstream") == "latest");
  HttpResult one = curl.get(s.url("/x"));
  CHECK(one.header("x-upstream") == "v1");
  CHECK(one.header("x-sluice-version") == "shop:1");
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("sticky header keys stay on their version across connections and workers") {
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.workers = 2;
  cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
      .alias("shop", "prod", R"({ "1" = 50, "2" = 50 })", "sticky = { header = \"x-user-id\" }")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);

  constexpr int kUsers = 200;
  std::map<int, std::string> first;
  int changed = 0;
  for (int round = 0; round < 4; ++round) {
    CurlClient curl;  // a new connection each round, so rounds land on different workers
    for (int u = 0; u < kUsers; ++u) {
      HttpResult r = curl.get(s.url("/"), {"x-user-id: user-" + std::to_string(u)});
      std::string who = r.header("x-upstream");
      if (round == 0)
        first[u] = who;
      else
        changed += who != first[u];
    }
  }
  CHECK(changed == 0);
  int on_v1 = 0;
  for (auto& [u, who] : first) on_v1 += who == "v1";
  CAPTURE(on_v1);
  CHECK(on_v1 >= 60);  // 50/50 over 200 keys: both arms get a fair share of users
  CHECK(on_v1 <= 140);

  // Requests without a key are still served (random draw).
  auto keyless = count_answers(s, "/", 200);
  CHECK(keyless["v1"] + keyless["v2"] == 200);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE(
    "raising the candidate weight moves sticky users only from the older to the newer version") {
  Upstream v1("v1"), v2("v2");
  auto config = [&](int w1, int w2) {
    ConfigText cfg;
    cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
        .alias("shop", "prod",
               "{ \"1\" = " + std::to_string(w1) + ", \"2\" = " + std::to_string(w2) + " }",
               "sticky = { header = \"x-user-id\" }")
        .route("shop:prod");
    return cfg.str();
  };
  constexpr int kUsers = 300;
  auto assign = [&](int w1, int w2) {
    std::map<int, std::string> who;
    Sluice s(config(w1, w2));
    REQUIRE_STARTED(s);
    CurlClient curl;
    for (int u = 0; u < kUsers; ++u)
      who[u] = curl.get(s.url("/"), {"x-user-id: u" + std::to_string(u)}).header("x-upstream");
    CHECK_CLEAN_STOP(s);
    return who;
  };
  auto at_10 = assign(90, 10);
  auto at_50 = assign(50, 50);
  auto back = assign(90, 10);  // a rollback moves everyone back
  int newer_at_10 = 0, older_to_newer = 0, newer_to_older = 0;
  for (int u = 0; u < kUsers; ++u) {
    newer_at_10 += at_10[u] == "v2";
    older_to_newer += at_10[u] == "v1" && at_50[u] == "v2";
    newer_to_older += at_10[u] == "v2" && at_50[u] == "v1";
  }
  CAPTURE(newer_at_10);
  CAPTURE(older_to_newer);
  CHECK(newer_at_10 >= 12);  // ~10% of 300
  CHECK(newer_at_10 <= 50);
  CHECK(older_to_newer >= 80);  // ~40% of 300 move
  CHECK(newer_to_older == 0);
  CHECK(back == at_10);
}

TEST_CASE("allow_override lets the request header pick a version only where allowed") {
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
      .alias("shop", "prod", R"({ "1" = 100, "2" = 0 })", "allow_override = true")
      .alias("shop", "locked", R"({ "1" = 100, "2" = 0 })")
      .route("shop:prod", "/")
      .route("shop:locked", "/locked/");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  CurlClient curl;
  for (int i = 0; i < 20; ++i) {
    HttpResult two = curl.get(s.url("/x"), {"x-sluice-version: 2"});
    CHECK(two.status == 200);
    CHECK(two.header("x-upstream") == "v2");
    CHECK(two.header("x-sluice-version") == "shop:2");
  }
  HttpResult one = curl.get(s.url("/x"), {"x-sluice-version: 1"});
  CHECK(one.header("x-upstream") == "v1");
  HttpResult none = curl.get(s.url("/x"));
  CHECK(none.header("x-upstream") == "v1");
  HttpResult locked = curl.get(s.url("/locked/x"), {"x-sluice-version: 2"});
  CHECK(locked.status == 200);
  CHECK(locked.header("x-upstream") == "v1");
  CHECK(v2.requests() == 20);
  CHECK_CLEAN_STOP(s);
}

TEST_CASE("a sticky cookie is issued to keyless clients and keeps them on their version") {
  Upstream v1("v1"), v2("v2");
  ConfigText cfg;
  cfg.function("shop", {{"1", {v1.address()}}, {"2", {v2.address()}}})
      .alias("shop", "prod", R"({ "1" = 50, "2" = 50 })",
             "sticky = { cookie = \"sluice-b\", issue = true }")
      .route("shop:prod");
  Sluice s(cfg.str());
  REQUIRE_STARTED(s);
  int on_v1 = 0, moved = 0;
  for (int client = 0; client < 60; ++client) {
    CAPTURE(client);
    CurlClient curl;
    HttpResult first = curl.get(s.url("/"));
    std::string set_cookie = first.header("set-cookie");
    REQUIRE(set_cookie.rfind("sluice-b=", 0) == 0);
    std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
    on_v1 += first.header("x-upstream") == "v1";
    for (int i = 0; i < 5; ++i) {
      HttpResult again = curl.get(s.url("/"), {"Cookie: " + cookie});
      moved += again.header("x-upstream") != first.header("x-upstream");
      CHECK(!again.headers.has("set-cookie"));  // a client with the cookie gets no new one
    }
  }
  CHECK(moved == 0);
  CHECK(on_v1 >= 15);
  CHECK(on_v1 <= 45);
  CHECK_CLEAN_STOP(s);
}
