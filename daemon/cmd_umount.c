// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_umount.c - `p2pfs umount MOUNTPOINT`: ask the daemon to flush,
 * unmount and stop, and return only once it has exited.
 */
#include "daemon/daemon.h"
#include "common/tm.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define EXIT_WAIT_MS 60000

static void help(FILE *f)
{
	fprintf(f, "usage: p2pfs umount MOUNTPOINT [--lazy]\n\n"
		   "Flush every file, make all changes durable, unmount and stop the daemon.\n"
		   "Returns after the daemon has exited. Fails (exit 4) while a program uses\n"
		   "the mount, unless --lazy: then the mount disappears at once and the daemon\n"
		   "stops when the last open file there is closed.\n\n"
		   "Options:\n"
		   "  --lazy       detach a busy mount instead of failing\n"
		   "  -h, --help   this text\n");
}

int cli_wait_exit(const char *state_dir)
{
	char *path = cfg_path(state_dir, "lock");
	uint64_t t0 = tm_mono_ms();
	int fd, rc = EXIT_FAIL;

	if (!path || (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		free(path);
		return EXIT_OK;
	}
	while (tm_mono_ms() - t0 < EXIT_WAIT_MS) {
		if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
			rc = EXIT_OK;
			break;
		}
		usleep(20000);
	}
	if (rc != EXIT_OK)
		cli_err("the daemon of %s has not exited after %d s (see %s/p2pfs.log)", state_dir,
			EXIT_WAIT_MS / 1000, state_dir);
	close(fd);
	free(path);
	return rc;
}

static int detach_dead(const char *mp)
{
	int ok;

	if (geteuid() == 0) {
		ok = umount2(mp, MNT_DETACH) == 0;
	} else {
		pid_t pid = fork();
		int st = 1;

		if (pid == 0) {
			execlp("fusermount3", "fusermount3", "-uz", "--", mp, (char *)NULL);
			_exit(127);
		}
		ok = pid > 0 && waitpid(pid, &st, 0) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
	}
	if (!ok) {
		cli_err("cannot remove the stale mount %s: %s", mp, strerror(errno));
		return EXIT_FAIL;
	}
	fprintf(stderr, "p2pfs: removed the stale mount at %s (its daemon had stopped)\n", mp);
	return EXIT_OK;
}

int cmd_umount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "lazy", no_argument, NULL, 'z' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *req[2] = { "umount", "lazy" };
	bool lazy = false;
	char *state;
	int c, err, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "hz", opts, NULL)) != -1) {
		switch (c) {
		case 'z':
			lazy = true;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind != argc - 1) {
		cli_err("umount needs exactly one MOUNTPOINT (see 'p2pfs umount --help')");
		return EXIT_USAGE;
	}
	if (!(state = cli_state_of_mount(argv[optind], &err))) {
		if (err == ENOTCONN || err == ECONNABORTED)
			return detach_dead(argv[optind]);
		if (err == ENOENT)
			cli_err("%s does not exist", argv[optind]);
		else
			cli_err("%s is not a p2pfs mount", argv[optind]);
		return EXIT_FAIL;
	}
	rc = ctl_call(state, lazy ? 2 : 1, req, false);
	if (rc == EXIT_OK)
		rc = cli_wait_exit(state);
	free(state);
	return rc;
}
