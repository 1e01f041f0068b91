// A fixture header: a raw call in a public header is reported too.
#pragma once
#include <sys/mman.h>                              // VIOLATION 7: system-call header
inline void shutdown() {}
inline int page(int fd) { return ::fstat(fd, nullptr); }  // VIOLATION 8: ::fstat
