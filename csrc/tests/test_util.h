// Tiny assertion helpers shared by the C++ unit tests (no test framework needed).
#pragma once
#include <c10/util/Exception.h>

#include <cstdio>
#include <functional>
#include <string>

inline int& failures() {
  static int count = 0;
  return count;
}

#define EXPECT(cond)                                               \
  do {                                                             \
    if (!(cond)) {                                                 \
      std::printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      ++failures();                                                \
    }                                                              \
  } while (0)

// f must throw a c10::Error whose message contains needle.
inline void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
  } catch (const c10::Error& e) {
    if (std::string(e.what()).find(needle) == std::string::npos) {
      std::printf("FAIL: error '%s' lacks '%s'\n", e.what(), needle.c_str());
      ++failures();
    }
    return;
  }
  std::printf("FAIL: no error, expected one mentioning '%s'\n", needle.c_str());
  ++failures();
}

inline int report(const char* name) {
  if (failures()) {
    std::printf("%s: %d check(s) failed\n", name, failures());
    return 1;
  }
  std::printf("%s: all checks passed\n", name);
  return 0;
}
