// Tests for the [store] table: local by default, etcd with endpoints, and every refusal at the
// value that causes it.
#include <doctest/doctest.h>

#include "test_util.h"

namespace sluice::config {

using test::expect_one_error;
using test::load;

TEST_CASE("without [store] the state stays local") {
  const LoadResult r = load("");
  REQUIRE(r.config.has_value());
  CHECK(r.config->store.kind == StoreSpec::Kind::kLocal);
  CHECK(r.config->store.prefix == "/sluice/");
}

TEST_CASE("an etcd store with every key") {
  const LoadResult r = load(R"(
[store]
kind = "etcd"
endpoints = ["http://127.0.0.1:2379", "127.0.0.1:22379", "http://[::1]:2379/", "http://localhost:2379"]
prefix = "/fleet-a/"
node = "edge-1@10.0.0.5:9901"
timeout = "500ms"
lease_ttl = "5s"
username = "sluice"
password_file = "secrets/etcd-pw"
)");
  CAPTURE(test::all_messages(r.errors));
  REQUIRE(r.config.has_value());
  const StoreSpec& s = r.config->store;
  CHECK(s.kind == StoreSpec::Kind::kEtcd);
  CHECK(s.endpoints.size() == 4);
  CHECK(s.prefix == "/fleet-a/");
  CHECK(s.node == "edge-1@10.0.0.5:9901");
  CHECK(s.timeout_ms == 500);
  CHECK(s.lease_ttl_ms == 5000);
  CHECK(s.username == "sluice");
  CHECK(s.password_file == "secrets/etcd-pw");  // "t.toml" has no directory to resolve against
}

TEST_CASE("an etcd store over TLS: https:// endpoints with a CA and a client certificate") {
  const LoadResult r = load(R"(
[store]
kind = "etcd"
endpoints = ["https://10.0.0.1:2379", "https://10.0.0.2:2379"]
tls = { ca = "/etc/etcd/ca.pem", cert = "/etc/sluice/etcd-client.pem", key = "/etc/sluice/etcd-client.key" }
)");
  CAPTURE(test::all_messages(r.errors));
  REQUIRE(r.config.has_value());
  CHECK(r.config->store.tls_ca == "/etc/etcd/ca.pem");
  CHECK(r.config->store.tls_cert == "/etc/sluice/etcd-client.pem");
  CHECK(r.config->store.tls_key == "/etc/sluice/etcd-client.key");
}

TEST_CASE("[store] refusals name the value") {
  SUBCASE("an unknown kind") {
    expect_one_error("[store]\nkind = \"consul\"\n", 2, 8, "expected \"local\" or \"etcd\"");
  }
  SUBCASE("etcd without endpoints") {
    expect_one_error("[store]\nkind = \"etcd\"\n", 1, 1, "needs endpoints");
  }
  SUBCASE("endpoints with a local store") {
    expect_one_error("[store]\nendpoints = [\"http://127.0.0.1:2379\"]\n", 2, 13,
                     "for kind = \"etcd\"");
  }
  SUBCASE("tls without an https:// endpoint is refused, not ignored") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379\"]\ntls = { ca = "
        "\"ca.pem\" "
        "}\n",
        4, 1, "store.tls is for https:// endpoints");
  }
  SUBCASE("a client certificate without its key") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"https://127.0.0.1:2379\"]\ntls = { cert = "
        "\"c.pem\" }\n",
        4, 7, "cert without key");
  }
  SUBCASE("a host name is refused: etcd endpoints are not resolved") {
    expect_one_error("[store]\nkind = \"etcd\"\nendpoints = [\"http://etcd.example:2379\"]\n", 3,
                     14, "IP address or localhost");
  }
  SUBCASE("a path") {
    expect_one_error("[store]\nkind = \"etcd\"\nendpoints = [\"http://127.0.0.1:2379/v3\"]\n", 3,
                     14, "without a path");
  }
  SUBCASE("a port out of range") {
    expect_one_error("[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:70000\"]\n", 3, 14,
                     "bad store.endpoints entry");
  }
  SUBCASE("a prefix that does not end with a slash") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"/sluice\"\n", 4, 10,
        "starts and ends with \"/\"");
  }
  SUBCASE("the prefix / alone") {
    expect_one_error("[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nprefix = \"/\"\n",
                     4, 10, "starts and ends");
  }
  SUBCASE("a node name with a slash") {
    expect_one_error("[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nnode = \"a/b\"\n",
                     4, 8, "not a node name");
  }
  SUBCASE("a lease shorter than 2s") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nlease_ttl = \"1s\"\n", 4, 13,
        "whole seconds");
  }
  SUBCASE("a lease in fractions of a second") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nlease_ttl = \"2500ms\"\n", 4,
        13, "whole seconds");
  }
  SUBCASE("a timeout over a minute") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\ntimeout = \"2m\"\n", 4, 11,
        "out of range");
  }
  SUBCASE("a user without a password file") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\nusername = \"sluice\"\n", 4,
        12, "needs store.password_file");
  }
  SUBCASE("a password file without a user") {
    expect_one_error(
        "[store]\nkind = \"etcd\"\nendpoints = [\"127.0.0.1:2379\"]\npassword_file = \"pw\"\n", 4,
        17, "needs store.username");
  }
  SUBCASE("an unknown key") {
    expect_one_error("[store]\nendpoint = []\n", 2, 1, "did you mean \"endpoints\"?");
  }
}

}  // namespace sluice::config
