// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_pin.c - `p2pfs pin PATH...`, `p2pfs unpin PATH...` and
 * `p2pfs peers [MOUNTPOINT]`.
 *
 * PATHs are files or directories inside a p2pfs mount; the mount's root is
 * the nearest directory above them that answers the "user.p2pfs.state"
 * extended attribute, and the daemon gets the paths relative to it.
 */
#include "daemon/daemon.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#define PATHS_PER_CALL 60

static void pin_help(FILE *f, bool unpin)
{
	if (unpin)
		fprintf(
		    f, "usage: p2pfs unpin PATH...\n\n"
		       "Let the node evict the chunks of these files (directories: every file in\n"
		       "them) when its cache needs room. Chunks that no connected member is known\n"
		       "to hold stay pinned, so unpinning never gives up the last copy.\n\n"
		       "Options:\n"
		       "  -h, --help  this text\n");
	else
		fprintf(
		    f,
		    "usage: p2pfs pin PATH...\n\n"
		    "Fetch these files (directories: every file in them) completely from the\n"
		    "share's members, rarest chunks first, and keep them: pinned chunks are never\n"
		    "evicted. Shows progress (bytes, rate, peers, time left) on a terminal.\n"
		    "Exit code 1 if some chunks could not be fetched (the daemon's log says why).\n\n"
		    "Options:\n"
		    "  -h, --help  this text\n");
}

/* The root of the p2pfs mount holding @path, and @path relative to it. */
static int locate(const char *path, char **ret_state, char *root, char *rel)
{
	char real[PATH_MAX], cur[PATH_MAX], buf[4096];

	if (!realpath(path, real)) {
		cli_err("%s: %s", path, strerror(errno));
		return -errno;
	}
	strcpy(cur, real);
	for (;;) {
		ssize_t n = getxattr(cur, "user.p2pfs.state", buf, sizeof(buf) - 1);

		if (n >= 0) {
			size_t l = strlen(cur);

			buf[n] = '\0';
			if (!(*ret_state = strdup(buf)))
				return -ENOMEM;
			strcpy(root, cur);
			strcpy(rel, real[l] == '/' ? real + l + 1 : real + l);
			if (!*rel)
				strcpy(rel, ".");
			return 0;
		}
		if (!strcmp(cur, "/")) {
			cli_err("%s is not inside a p2pfs mount", path);
			return -EINVAL;
		}
		{
			char *slash = strrchr(cur, '/');

			if (slash == cur)
				cur[1] = '\0';
			else
				*slash = '\0';
		}
	}
}

static int pin_cmd(int argc, char **argv, bool unpin)
{
	static const struct option opts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	char *state = NULL;
	const char **req;
	int c, n = 0, rc = EXIT_OK;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		if (c == 'h') {
			pin_help(stdout, unpin);
			return EXIT_OK;
		}
		pin_help(stderr, unpin);
		return EXIT_USAGE;
	}
	if (optind == argc) {
		pin_help(stderr, unpin);
		return EXIT_USAGE;
	}
	if (!(req = calloc(PATHS_PER_CALL + 1, sizeof(*req))))
		return EXIT_FAIL;
	req[0] = unpin ? "unpin" : "pin";
	for (int i = optind; i < argc && rc == EXIT_OK; i++) {
		char rel[PATH_MAX], root[PATH_MAX], *st = NULL;

		if (locate(argv[i], &st, root, rel) < 0) {
			rc = EXIT_FAIL;
			break;
		}
		if (!state) {
			state = st;
		} else if (strcmp(state, st)) {
			cli_err("%s is on another p2pfs mount than %s: give them separately",
				argv[i], argv[optind]);
			free(st);
			rc = EXIT_USAGE;
			break;
		} else {
			free(st);
		}
		if (!(req[1 + n] = strdup(rel))) {
			rc = EXIT_FAIL;
			break;
		}
		n++;
		if (n == PATHS_PER_CALL || i == argc - 1) {
			rc = ctl_call(state, 1 + n, req, false);
			for (int k = 1; k <= n; k++)
				free((char *)req[k]);
			n = 0;
		}
	}
	for (int k = 1; k <= n; k++)
		free((char *)req[k]);
	free(state);
	free(req);
	return rc;
}

int cmd_pin(int argc, char **argv)
{
	return pin_cmd(argc, argv, false);
}

int cmd_unpin(int argc, char **argv)
{
	return pin_cmd(argc, argv, true);
}

static void peers_help(FILE *f)
{
	fprintf(f, "usage: p2pfs peers [MOUNTPOINT] [--state DIR] [--json]\n\n"
		   "List the share's members this node is connected to: node id, address,\n"
		   "direction, whether it may write, bytes and chunks each way, requests in\n"
		   "flight and how long the connection has been up.\n\n"
		   "Options:\n"
		   "  --state DIR  the daemon's state directory\n"
		   "  --json       one JSON array, for scripts\n"
		   "  -h, --help   this text\n");
}

int cmd_peers(int argc, char **argv)
{
	return cli_query(argc, argv, "peers", peers_help);
}
