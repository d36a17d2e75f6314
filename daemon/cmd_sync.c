// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_sync.c - `p2pfs sync [MOUNTPOINT]`: flush every file and make
 * all changes durable, like sync(1) for one mount.
 */
#include "daemon/daemon.h"

#include <getopt.h>
#include <stdlib.h>

static void help(FILE *f)
{
	fprintf(f, "usage: p2pfs sync [MOUNTPOINT] [--state DIR]\n\n"
		   "Flush every file being written and make all changes durable on disk.\n\n"
		   "Options:\n"
		   "  --state DIR  the daemon's state directory\n"
		   "  -h, --help   this text\n");
}

int cmd_sync(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *req[1] = { "sync" };
	char *state;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		help(stderr);
		return EXIT_USAGE;
	}
	if (!(state = cli_pick_state(state_opt, optind < argc ? argv[optind] : NULL)))
		return EXIT_NOT_RUNNING;
	rc = ctl_call(state, 1, req, false);
	free(state);
	return rc;
}
