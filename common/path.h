/* path.h - the directory part of a file path. */
#ifndef KVTIER_COMMON_PATH_H
#define KVTIER_COMMON_PATH_H

#include <stdio.h>
#include <string.h>

/* The directory of path into dir (cap bytes, at least 2): "." when path
 * has no slash, "/" for a name right under the root, else everything
 * before the last slash (truncated to cap). */
static inline void kvt_path_dir(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (!slash)
		snprintf(dir, cap, ".");
	else if (slash == path)
		snprintf(dir, cap, "/");
	else
		snprintf(dir, cap, "%.*s", (int)(slash - path), path);
}

#endif
