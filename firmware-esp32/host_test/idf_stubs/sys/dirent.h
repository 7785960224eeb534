#pragma once
/* ESP-IDF's newlib provides directories through its VFS (components/newlib/platform_include/sys/dirent.h). */
#include <stdint.h>
typedef struct { uint16_t dd_vfs_idx; uint16_t dd_rsv; } DIR;
struct dirent {
    int d_ino;
    uint8_t d_type;
    char d_name[256];
};
DIR *opendir(const char *name);
struct dirent *readdir(DIR *pdir);
int closedir(DIR *pdir);
