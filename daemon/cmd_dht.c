// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_dht.c - `p2pfs dht ...`: ask a running daemon's DHT directly,
 * for debugging and for scripts.
 */
#include "daemon/daemon.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
	fprintf(f, "usage: p2pfs dht [--state DIR | --mount MOUNTPOINT] REQUEST\n\n"
		   "Requests:\n"
		   "  find-node ID        the closest nodes to ID\n"
		   "  provide KEY         announce that this node holds KEY (republished before\n"
		   "                      it expires)\n"
		   "  providers KEY       the nodes that hold KEY\n"
		   "  bootstrap HOST:PORT ping a node to join the network through it\n"
		   "  put NAME VALUE      publish VALUE (at most 1000 bytes) under NAME, signed\n"
		   "                      with this node's key; a later put replaces it\n"
		   "  get [PUBKEY] NAME   the newest value under NAME of that key (this node's\n"
		   "                      by default)\n\n"
		   "ID and KEY are 64 hex digits, or any text (which stands for its SHA-256).\n"
		   "Each lookup prints what it found and the hops, requests and time it took.\n"
		   "Exit status 1 when nothing was found.\n\n"
		   "Options:\n"
		   "  --state DIR         the daemon's state directory\n"
		   "  --mount MOUNTPOINT  the daemon serving that mount\n"
		   "  -h, --help          this text\n");
}

int cmd_dht(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "mount", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *mount = NULL, *req[4] = { "dht" };
	int nargs;
	char *state;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'm':
			mount = optarg;
			break;
		case 'h':
			help(stdout);
			return EXIT_OK;
		default:
			help(stderr);
			return EXIT_USAGE;
		}
	}
	nargs = argc - optind;
	if (nargs < 2 || nargs > 3 ||
	    (nargs == 3 && strcmp(argv[optind], "put") && strcmp(argv[optind], "get")) ||
	    (nargs == 2 && !strcmp(argv[optind], "put")) ||
	    (strcmp(argv[optind], "find-node") && strcmp(argv[optind], "provide") &&
	     strcmp(argv[optind], "providers") && strcmp(argv[optind], "bootstrap") &&
	     strcmp(argv[optind], "put") && strcmp(argv[optind], "get"))) {
		help(stderr);
		return EXIT_USAGE;
	}
	for (int i = 0; i < nargs; i++)
		req[1 + i] = argv[optind + i];
	if (!(state = cli_pick_state(state_opt, mount)))
		return EXIT_NOT_RUNNING;
	rc = ctl_call(state, 1 + nargs, req, false);
	free(state);
	return rc;
}
