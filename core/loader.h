/*
 * loader - find, dlopen and check plugins.
 *
 * A plugin NAME is the file NAME.so in the first directory that has it:
 * the configured gateway.plugin_dirs, then --plugin-dir, then
 * <daemon>/../lib/ccgw/plugins, then the install dir. It is opened with
 * RTLD_NOW|RTLD_LOCAL; its descriptor is checked in this order before any
 * other field is read: symbol present, abi_major equal, abi_minor not newer
 * than ours, size large enough; then name, required callbacks and option
 * tables. Any rejection dlcloses the file and says why, naming the file,
 * its ABI and ours. Accepted descriptors are copied into a zeroed
 * full-size struct, so fields an older plugin lacks read as NULL.
 */
#ifndef CCGW_LOADER_H
#define CCGW_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "ccgw/plugin.h"

typedef struct ccgw_loader ccgw_loader_t;

ccgw_loader_t *ccgw_loader_new(void);
void ccgw_loader_free(ccgw_loader_t *l); /* dlcloses everything */
/* Append a search directory (copied). */
int ccgw_loader_add_dir(ccgw_loader_t *l, const char *dir);
/* Append the built-in directories (relative to the executable, install dir). */
void ccgw_loader_add_default_dirs(ccgw_loader_t *l);

/* Load NAME once (cached). NULL with a reason in why; *exists (may be NULL)
 * tells a refused file (true) from no file at all (false). */
const ccgw_plugin_t *ccgw_loader_get(ccgw_loader_t *l, const char *name, char *why, size_t whylen,
                                     bool *exists);

/* Open and check one file (no caching; for tests and --list-plugins). On
 * success returns the dl handle and copies the descriptor into *out. */
void *ccgw_loader_open_file(const char *path, ccgw_plugin_t *out, char *why, size_t whylen);

/* --list-plugins: every *.so in the search dirs, loadable or not. Returns
 * the number of loadable plugins. */
int ccgw_loader_list(ccgw_loader_t *l, FILE *out);

#endif
