// The os layer of the fixture: raw calls are allowed here, none reported.
#include <unistd.h>
int close_fd(int fd) { return ::close(fd); }
