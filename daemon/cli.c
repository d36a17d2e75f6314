// SPDX-License-Identifier: MIT
/*
 * daemon/cli.c - helpers the commands share: error lines and finding the
 * daemon behind a mount point.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>
#include <unistd.h>

void cli_err(const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	n = snprintf(buf, sizeof(buf), "p2pfs: ");
	va_start(ap, fmt);
	vsnprintf(buf + n, sizeof(buf) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(buf);
	buf[n++] = '\n';
	(void)!write(2, buf, (size_t)n);
}

bool cli_is_tty(FILE *f)
{
	return isatty(fileno(f));
}

char *cli_state_of_mount(const char *mountpoint, int *ret_err)
{
	char buf[4096];
	ssize_t n = getxattr(mountpoint, "user.p2pfs.state", buf, sizeof(buf) - 1);

	if (n < 0) {
		*ret_err = errno;
		return NULL;
	}
	buf[n] = '\0';
	*ret_err = 0;
	return strdup(buf);
}

char *cli_pick_state(const char *state_opt, const char *mountpoint)
{
	char *s;
	int err;

	if (state_opt)
		return strdup(state_opt);
	if (!mountpoint)
		return cfg_default_state_dir();
	if ((s = cli_state_of_mount(mountpoint, &err)))
		return s;
	if (err == ENOTCONN || err == ECONNABORTED)
		cli_err("%s: the p2pfs daemon serving it is gone (crashed or killed); remount it "
			"with 'p2pfs mount %s', or remove it with 'p2pfs umount %s'",
			mountpoint, mountpoint, mountpoint);
	else if (err == ENOENT)
		cli_err("%s does not exist", mountpoint);
	else
		cli_err("%s is not a p2pfs mount (%s): give the mount point, or --state DIR",
			mountpoint, strerror(err));
	return NULL;
}

void cli_err_path(int rc, const char *what, const char *path)
{
	if (rc == -ENOSPC || rc == -EDQUOT)
		cli_err("no space left on the disk of %s (%s): free some space, or use --state DIR "
			"on another disk",
			path, what);
	else
		cli_err("%s %s: %s", what, path, strerror(-rc));
}
