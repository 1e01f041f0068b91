// mproc: Python's multiprocessing for C++. This header brings in every
// concept; each also has a header of its own (see the README).
#pragma once

#include "mproc/duration.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/serialization.hpp"
#include "mproc/pipe.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sync.hpp"
#include "mproc/pool.hpp"
#include "mproc/futures.hpp"
#include "mproc/manager.hpp"
