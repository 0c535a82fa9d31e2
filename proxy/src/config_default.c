/*
 * The configuration coil-proxy runs without a file: one listener on :8080
 * in front of the demo upstream that coil-proxy then serves itself on
 * 127.0.0.1:8081 (demo.c). Written in the file format, not as structs, so
 * it goes through the same parser and checks as any file, and so
 * docs/proxy.md can show it as a starting point.
 */
#include "config.h"

static const char builtin[] =
    "# coil-proxy built-in configuration\n"
    "[proxy]\n"
    "access_log = -\n"
    "metrics = 127.0.0.1:9100\n"
    "\n"
    "[listen]\n"
    "address = 0.0.0.0:8080\n"
    "\n"
    "[upstream demo]\n"
    "server = 127.0.0.1:8081\n"
    "\n"
    "[route]\n"
    "path = /\n"
    "upstream = demo\n";

const char *px_config_builtin(void)
{
    return builtin;
}
