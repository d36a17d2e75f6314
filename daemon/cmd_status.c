// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_status.c - `p2pfs status [MOUNTPOINT]`: what the daemon is doing;
 * and the option handling of the read-only queries (status, peers).
 */
#include "daemon/daemon.h"

#include <getopt.h>
#include <stdlib.h>

static void status_help(FILE *f)
{
	fprintf(f,
		"usage: p2pfs status [MOUNTPOINT] [--state DIR] [--json]\n\n"
		"Show the mount point, node and share ids, files, bytes stored, chunk count,\n"
		"dedup ratio, cache use and quota, activity and uptime of a running daemon,\n"
		"found by its mount point, by --state DIR, or at the default state directory.\n\n"
		"Options:\n"
		"  --state DIR  the daemon's state directory\n"
		"  --json       one JSON object, for scripts\n"
		"  -h, --help   this text\n");
}

int cli_query(int argc, char **argv, const char *request, void (*usage)(FILE *f))
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *req[2] = { request, "json" };
	bool json = false;
	char *state;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!(state = cli_pick_state(state_opt, optind < argc ? argv[optind] : NULL)))
		return EXIT_NOT_RUNNING;
	rc = ctl_call(state, json ? 2 : 1, req, false);
	free(state);
	return rc;
}

int cmd_status(int argc, char **argv)
{
	return cli_query(argc, argv, "status", status_help);
}
