/*
 * fsutil - small file-system helpers shared by the modules that keep files
 * under data_dir (spool, alarm store, audit log).
 */
#ifndef CCGW_FSUTIL_H
#define CCGW_FSUTIL_H

/* mkdir -p with mode 0750 for each folder it creates: 0, or -1 with errno
 * (ENAMETOOLONG past 4095 bytes). Existing folders are fine. */
int ccgw_mkdirs(const char *dir);

#endif
