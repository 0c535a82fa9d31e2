/* coil runtime: everything an embedder includes. */
#ifndef COIL_H
#define COIL_H
#include "coil/buf.h"
#include "coil/loop.h"
#include "coil/msg.h"
#include "coil/net.h"
#include "coil/rt.h"
#include "coil/task.h"
#include "coil/timer.h"
#endif
