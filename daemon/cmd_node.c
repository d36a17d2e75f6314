// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_node.c - `p2pfs node`: run a DHT node with no mount (a public
 * bootstrap node is one of these), and `p2pfs stop` to end any daemon.
 */
#include "daemon/daemon.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
	fprintf(f,
		"usage: p2pfs node [--state DIR] [--listen ADDR:PORT] [--bootstrap HOST:PORT]...\n"
		"                  [--foreground]\n\n"
		"Run a node of the p2pfs network with no mount: it keeps a routing table,\n"
		"answers lookups and stores provider records for others. A public bootstrap\n"
		"node is one of these. Returns once the node listens (it runs in the\n"
		"background unless --foreground); stop it with 'p2pfs stop --state DIR'.\n\n"
		"Options:\n"
		"  --state DIR           state directory (identity, routing table, log)\n"
		"  --listen ADDR:PORT    UDP address for the DHT (default 0.0.0.0:7575, or any\n"
		"                        free port if that one is taken)\n"
		"  --bootstrap HOST:PORT a node to join through (repeatable; needed only the\n"
		"                        first time: the routing table is saved)\n"
		"  --no-lan              no LAN discovery by multicast\n"
		"  --log-level LEVEL     error, warn, notice, info (default) or debug\n"
		"  --foreground          stay in the foreground, log to stderr\n"
		"  -h, --help            this text\n");
}

int cmd_node(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "listen", required_argument, NULL, 'L' },
		{ "bootstrap", required_argument, NULL, 'B' },
		{ "no-lan", no_argument, NULL, 'N' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "foreground", no_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct cfg_opt set[2 * CFG_MAX_ADDRS + 4];
	unsigned nset = 0;
	const char *state_opt = NULL;
	struct cfg cfg;
	char what[4200];
	int c, rc = EXIT_FAIL;

	optind = 1;
	while ((c = getopt_long(argc, argv, "fh", opts, NULL)) != -1) {
		const char *key = NULL, *val = optarg;

		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'L':
			key = "listen";
			break;
		case 'B':
			key = "bootstrap";
			break;
		case 'N':
			key = "lan-discovery";
			val = "no";
			break;
		case 'l':
			key = "log-level";
			break;
		case 'f':
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
			set[nset++].val = val;
		}
	}
	if (optind != argc) {
		cli_err("node takes no arguments besides options (see 'p2pfs node --help')");
		return EXIT_USAGE;
	}
	cfg_init(&cfg);
	cfg.node_only = true;
	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--foreground"))
			cfg.foreground = true;
	if ((rc = cfg_setup(&cfg, state_opt, set, nset)) != EXIT_OK)
		goto out;
	snprintf(what, sizeof(what), "node running (state %s)", cfg.state_dir);
	rc = cli_start_daemon(&cfg, what);
out:
	cfg_done(&cfg);
	return rc;
}

static void stop_help(FILE *f)
{
	fprintf(f, "usage: p2pfs stop [MOUNTPOINT] [--state DIR]\n\n"
		   "Stop a daemon: a DHT node, or a mount (like 'p2pfs umount'). Returns after\n"
		   "it has exited.\n\n"
		   "Options:\n"
		   "  --state DIR  the daemon's state directory\n"
		   "  -h, --help   this text\n");
}

int cmd_stop(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *req[1] = { "umount" };
	char *state;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 's':
			state_opt = optarg;
			break;
		case 'h':
			stop_help(stdout);
			return EXIT_OK;
		default:
			stop_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		stop_help(stderr);
		return EXIT_USAGE;
	}
	if (!(state = cli_pick_state(state_opt, optind < argc ? argv[optind] : NULL)))
		return EXIT_NOT_RUNNING;
	rc = ctl_call(state, 1, req, false);
	if (rc == EXIT_OK)
		rc = cli_wait_exit(state);
	free(state);
	return rc;
}
