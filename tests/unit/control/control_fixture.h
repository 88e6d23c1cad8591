// A control-plane test fixture: a config file in a private temporary directory (with a state
// directory) and a publisher that records what the Control publishes. Shared by the control and
// admin unit tests.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "control/control.h"

namespace sluice::control::test {

struct Fixture {
  std::string dir;
  std::string path;
  std::shared_ptr<const routing::RoutingTable> published;
  int publishes = 0;

  Fixture() {
    char tmpl[] = "/tmp/sluice-control-unit-XXXXXX";
    dir = ::mkdtemp(tmpl);
    path = dir + "/sluice.toml";
    write(toml());
  }
  ~Fixture() { std::filesystem::remove_all(dir); }

  std::string toml(const std::string& v3_extra = "", const std::string& prod = "\"3\" = 100") {
    return "[listen]\naddress = \"127.0.0.1:0\"\n[state]\ndir = \"" + dir +
           "/state\"\n"
           "[functions.checkout.latest]\nendpoints = [\"127.0.0.1:7005\"]\n"
           "[functions.checkout.versions.3]\nendpoints = [\"127.0.0.1:7003\"]\n" +
           v3_extra +
           "[functions.checkout.versions.4]\nendpoints = [\"127.0.0.1:7004\"]\n"
           "[functions.checkout.aliases.prod]\ntraffic = { " +
           prod + " }\n[[routes]]\ntarget = \"checkout:prod\"\n";
  }
  void write(const std::string& text) { std::ofstream(path) << text; }

  void attach(Control& c) {
    c.set_publisher([this](std::shared_ptr<const routing::RoutingTable> t) {
      published = std::move(t);
      ++publishes;
    });
  }
};

}  // namespace sluice::control::test
