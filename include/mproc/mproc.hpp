// mproc: Python's multiprocessing for C++. This header brings in every
// concept; each also has a header of its own (see the README). Not
// <mproc/managed_segment.hpp>, which pulls in Boost.Interprocess's managed
// memory headers: include it where you use ManagedSegment.
#pragma once

#include "mproc/duration.hpp"
#include "mproc/errors.hpp"
#include "mproc/process.hpp"
#include "mproc/serialization.hpp"
#include "mproc/pipe.hpp"
#include "mproc/connection.hpp"
#include "mproc/queue.hpp"
#include "mproc/shared_memory.hpp"
#include "mproc/sync.hpp"
#include "mproc/pool.hpp"
#include "mproc/futures.hpp"
#include "mproc/log.hpp"
#include "mproc/manager.hpp"
#include "mproc/context.hpp"
