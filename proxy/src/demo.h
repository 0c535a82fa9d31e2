#ifndef COIL_PROXY_DEMO_H
#define COIL_PROXY_DEMO_H
#include "coil/http.h"
/* Sets up the demo's routes: once, before the cores start (they only read
 * them afterwards). */
void px_demo_init(void);
/* Starts the demo upstream on this core (SO_REUSEPORT on host:port). */
int px_demo_start(coil_loop *loop, unsigned core, const char *host, uint16_t port,
                  coil_http_server **out);
#endif
