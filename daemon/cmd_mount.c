// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_mount.c - `p2pfs mount MOUNTPOINT`: checks, then starts the
 * daemon and returns once the mount is ready.
 *
 * In the background case the daemon is a forked child whose stderr is a
 * pipe to this process until the mount is ready, so every start-up error
 * reaches the user's terminal; the child then writes "\001ok" (or
 * "\001exit N") and from then on logs to STATE/p2pfs.log.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#define START_TIMEOUT_MS 120000

static void help(FILE *f)
{
	fprintf(
	    f,
	    "usage: p2pfs mount MOUNTPOINT [options]\n\n"
	    "Mount the node's share at MOUNTPOINT (an existing directory). On first use this\n"
	    "creates the state directory, the node's identity and a new default share.\n"
	    "Returns once the mount is ready; the daemon keeps running in the background.\n\n"
	    "Options:\n"
	    "  --state DIR           state directory (default /var/lib/p2pfs for root,\n"
	    "                        $XDG_DATA_HOME/p2pfs otherwise); one per running node\n"
	    "  --foreground, -f      stay in the foreground and log to stderr\n"
	    "  --cache-size SIZE     space for chunks fetched from peers, e.g. 20G (default 10G)\n"
	    "  --log-level LEVEL     error, warn, notice, info (default) or debug\n"
	    "  --listen ADDR:PORT    address to accept peers on (repeatable)\n"
	    "  --bootstrap HOST:PORT a node to join the network through (repeatable)\n"
	    "  --peer HOST:PORT      a member of the share to connect to (repeatable; members\n"
	    "                        are also found through the DHT and on the LAN)\n"
	    "  --fetch-timeout SECS  how long a read waits for a chunk from peers before it\n"
	    "                        fails with EIO (default 30)\n"
	    "  --max-peers N         share members to keep connected (default 32)\n"
	    "  --max-upload RATE     limit chunk data sent to peers, e.g. 20M (bytes/s)\n"
	    "                        or 100mbit; peers that upload to us are served first\n"
	    "  --max-download RATE   limit chunk data fetched from peers\n"
	    "  --share LINK          mount the share of a link from 'p2pfs init' or 'p2pfs link'\n"
	    "                        (p2pfs://w/... writes, p2pfs://r/... is read-only)\n"
	    "  --no-writeback-cache  send every write to the daemon at once\n"
	    "  --debug-fuse          log every FUSE request (very verbose)\n"
	    "  -h, --help            this text\n\n"
	    "Settings can also be put in DIR/config as 'key = value' lines, using the option\n"
	    "names without dashes (cache-size = 20G). Options on the command line win.\n");
}

/* The mount entry at @path in /proc/self/mountinfo: its filesystem type, or NULL. */
static char *mounted_fstype(const char *path)
{
	FILE *f = fopen("/proc/self/mountinfo", "re");
	char line[8192], *type = NULL;

	if (!f)
		return NULL;
	while (fgets(line, sizeof(line), f)) {
		char mp[4096], fstype[256], *sep;

		/* id parent maj:min root mountpoint options... - fstype source superopts */
		if (sscanf(line, "%*s %*s %*s %*s %4095s", mp) != 1)
			continue;
		/* Undo the octal escapes of spaces and friends. */
		for (char *s = mp, *d = mp;; s++, d++) {
			if (s[0] == '\\' && s[1] >= '0' && s[1] <= '3' && s[2] && s[3]) {
				*d = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
				s += 3;
			} else {
				*d = *s;
			}
			if (!*s)
				break;
		}
		if (strcmp(mp, path) != 0 || !(sep = strstr(line, " - ")))
			continue;
		if (sscanf(sep + 3, "%255s", fstype) == 1) {
			free(type);
			type = strdup(fstype); /* the last mount on a path is the visible one */
		}
	}
	fclose(f);
	return type;
}

static int remove_stale_mount(const char *mp)
{
	if (geteuid() == 0)
		return umount2(mp, MNT_DETACH) < 0 ? -errno : 0;
	{
		pid_t pid = fork();
		int status;

		if (pid == 0) {
			execlp("fusermount3", "fusermount3", "-uz", "--", mp, (char *)NULL);
			_exit(127);
		}
		if (pid < 0 || waitpid(pid, &status, 0) < 0)
			return -errno;
		return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EPERM;
	}
}

static int check_mountpoint(const char *arg, char **ret_real)
{
	struct stat st;
	char *real, *type;

	if (stat(arg, &st) < 0) {
		int err = errno;

		if (err == ENOTCONN || err == ECONNABORTED) {
			/* A p2pfs mount whose daemon died (kill -9, crash): clean it up. */
			if (remove_stale_mount(arg) == 0 && stat(arg, &st) == 0) {
				fprintf(stderr,
					"p2pfs: removed the stale mount at %s (its daemon had "
					"stopped)\n",
					arg);
				return check_mountpoint(arg, ret_real);
			}
			cli_err("%s is a mount whose daemon is gone, and it cannot be removed; run "
				"'fusermount3 -uz %s' (or 'umount -l %s' as root)",
				arg, arg, arg);
			return EXIT_BUSY;
		}
		if (err == ENOENT)
			cli_err("mount point %s does not exist; create it with: mkdir -p %s", arg,
				arg);
		else
			cli_err("mount point %s: %s", arg, strerror(err));
		return EXIT_FAIL;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_err("mount point %s is not a directory", arg);
		return EXIT_FAIL;
	}
	if (!(real = realpath(arg, NULL))) {
		cli_err("mount point %s: %s", arg, strerror(errno));
		return EXIT_FAIL;
	}
	if ((type = mounted_fstype(real))) {
		char probe[8];

		/* stat() may be answered from the kernel's attribute cache; an
		 * xattr read always reaches the daemon, so it tells a dead one. */
		if (!strcmp(type, "fuse.p2pfs") &&
		    getxattr(real, "user.p2pfs.state", probe, sizeof(probe)) < 0 &&
		    (errno == ENOTCONN || errno == ECONNABORTED) && remove_stale_mount(real) == 0) {
			fprintf(stderr,
				"p2pfs: removed the stale mount at %s (its daemon had stopped)\n",
				real);
			free(type);
			free(real);
			return check_mountpoint(arg, ret_real);
		}
		if (!strcmp(type, "fuse.p2pfs"))
			cli_err("%s is already mounted by p2pfs (see 'p2pfs status %s'; unmount "
				"with 'p2pfs umount %s')",
				real, real, real);
		else
			cli_err("%s is already a mount point (%s); choose an empty directory", real,
				type);
		free(type);
		free(real);
		return EXIT_BUSY;
	}
	*ret_real = real;
	return EXIT_OK;
}

static int check_fuse(void)
{
	int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return EXIT_OK;
	}
	if (errno == ENOENT || errno == ENODEV || errno == ENXIO)
		cli_err("/dev/fuse is missing: install FUSE (apt-get install fuse3) and load its "
			"module (modprobe fuse); in a container, pass the device in (--device "
			"/dev/fuse)");
	else if (errno == EACCES || errno == EPERM)
		cli_err("no permission to open /dev/fuse: run as root, or ask an administrator to "
			"allow your user to use FUSE");
	else
		cli_err("cannot open /dev/fuse: %s", strerror(errno));
	return EXIT_FAIL;
}

/* Relay the child's start-up messages; returns the exit code. */
static int wait_ready(int fd, const char *state_dir)
{
	char buf[4096];
	size_t have = 0;
	int waited = 0;

	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		int r = poll(&p, 1, 1000);
		ssize_t n;
		char *line, *nl;

		if (r == 0) {
			waited += 1000;
			if (waited >= START_TIMEOUT_MS) {
				cli_err(
				    "the daemon did not finish starting within %d s; see %s/p2pfs.log",
				    START_TIMEOUT_MS / 1000, state_dir);
				return EXIT_FAIL;
			}
			continue;
		}
		if (r < 0 && errno == EINTR)
			continue;
		n = read(fd, buf + have, sizeof(buf) - 1 - have);
		if (n <= 0) {
			if (have)
				fprintf(stderr, "%.*s\n", (int)have, buf);
			cli_err("the daemon stopped during start-up; see %s/p2pfs.log", state_dir);
			return EXIT_FAIL;
		}
		have += (size_t)n;
		buf[have] = '\0';
		line = buf;
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			if (!strcmp(line, "\001ok"))
				return EXIT_OK;
			if (!strncmp(line, "\001exit ", 6))
				return atoi(line + 6);
			fprintf(stderr, "%s\n", line);
			line = nl + 1;
		}
		have = (size_t)(buf + have - line);
		memmove(buf, line, have);
		if (have >= sizeof(buf) - 1) {
			fprintf(stderr, "%.*s\n", (int)have, buf);
			have = 0;
		}
	}
}

int cli_start_daemon(struct cfg *cfg, const char *what)
{
	int rc, lock_fd, pipefd[2];
	pid_t pid;

	if ((lock_fd = daemon_lock_state(cfg->state_dir, &rc)) < 0)
		return rc;
	if (cfg->foreground)
		return daemon_run(cfg, lock_fd, -1);
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		cli_err("pipe: %s", strerror(errno));
		close(lock_fd);
		return EXIT_FAIL;
	}
	fflush(NULL);
	pid = fork();
	if (pid < 0) {
		cli_err("fork: %s", strerror(errno));
		close(lock_fd);
		return EXIT_FAIL;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);

		close(pipefd[0]);
		setsid();
		if (chdir("/") < 0)
			_exit(EXIT_FAIL);
		if (null >= 0) {
			dup2(null, 0);
			dup2(null, 1);
			close(null);
		}
		dup2(pipefd[1], 2);
		_exit(daemon_run(cfg, lock_fd, pipefd[1]));
	}
	close(pipefd[1]);
	close(lock_fd);
	rc = wait_ready(pipefd[0], cfg->state_dir);
	close(pipefd[0]);
	if (rc == EXIT_OK)
		printf("p2pfs: %s\n", what);
	else
		waitpid(pid, NULL, WNOHANG);
	return rc;
}

int cmd_mount(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "cache-size", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "listen", required_argument, NULL, 'L' },
		{ "bootstrap", required_argument, NULL, 'B' },
		{ "share", required_argument, NULL, 'S' },
		{ "peer", required_argument, NULL, 'P' },
		{ "fetch-timeout", required_argument, NULL, 'T' },
		{ "max-upload", required_argument, NULL, 'U' },
		{ "max-peers", required_argument, NULL, 'M' },
		{ "max-download", required_argument, NULL, 'N' },
		{ "no-writeback-cache", no_argument, NULL, 'W' },
		{ "debug-fuse", no_argument, NULL, 'D' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cfg_opt set[64];
	unsigned nset = 0;
	const char *state_opt = NULL;
	bool foreground = false, debug = false;
	struct cfg cfg;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		const char *key = NULL;

		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'f':
			foreground = true;
			break;
		case 'c':
			key = "cache-size";
			break;
		case 'l':
			key = "log-level";
			break;
		case 'L':
			key = "listen";
			break;
		case 'B':
			key = "bootstrap";
			break;
		case 'S':
			key = "share";
			break;
		case 'P':
			key = "peer";
			break;
		case 'T':
			key = "fetch-timeout";
			break;
		case 'U':
			key = "max-upload";
			break;
		case 'M':
			key = "max-peers";
			break;
		case 'N':
			key = "max-download";
			break;
		case 'W':
			key = "writeback-cache";
			optarg = "no";
			break;
		case 'D':
			debug = true;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
		if (key && nset < ARRAY_SIZE(set)) {
			set[nset].key = key;
			set[nset++].val = optarg;
		}
	}
	if (optind != argc - 1) {
		cli_err("mount needs exactly one MOUNTPOINT (see 'p2pfs mount --help')");
		return EXIT_USAGE;
	}
	cfg_init(&cfg);
	cfg.foreground = foreground;
	cfg.debug_fuse = debug;
	if ((rc = check_mountpoint(argv[optind], &cfg.mountpoint)) != EXIT_OK)
		goto out;
	if ((rc = check_fuse()) != EXIT_OK)
		goto out;
	if ((rc = cfg_setup(&cfg, state_opt, set, nset)) != EXIT_OK)
		goto out;
	{
		char what[4200];

		snprintf(what, sizeof(what), "mounted %s (state %s)", cfg.mountpoint,
			 cfg.state_dir);
		rc = cli_start_daemon(&cfg, what);
	}
out:
	cfg_done(&cfg);
	return rc;
}
