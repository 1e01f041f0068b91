// See include/mproc/detail/pool_messages.hpp (the layouts live there so the
// chunk encoder in the public templates writes the header in place).
#pragma once

#include "mproc/detail/pool_messages.hpp"
