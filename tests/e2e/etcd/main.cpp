// The doctest main for the etcd tests (etcd_main.h: skipped without etcd).
#define DOCTEST_CONFIG_IMPLEMENT
#include "etcd_main.h"

int main(int argc, char** argv) {
  return sluice::e2e::run_etcd_suite(argc, argv);
}
