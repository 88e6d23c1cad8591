// The doctest main for the unit tests; test cases live beside, mirroring proxy/.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
