// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_init.c - `p2pfs init`: make a new share and print its links;
 * `p2pfs link`: print the links of a mounted share.
 */
#include "daemon/daemon.h"
#include "daemon/share.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static void help(FILE *f)
{
	fprintf(f,
		"usage: p2pfs init [--state DIR]\n\n"
		"Create a new share and print its two links:\n"
		"  write link  p2pfs://w/...  whoever has it can change the share: keep it secret\n"
		"  read link   p2pfs://r/...  whoever has it can read the share\n"
		"Mount it anywhere with 'p2pfs mount DIR --share LINK'. A link carries a\n"
		"checksum: a mistyped link is refused, never taken for another share.\n\n"
		"Options:\n"
		"  --state DIR  the state directory to keep the share's keys in\n"
		"  -h, --help   this text\n");
}

int cmd_init(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL;
	char link[SHARE_LINK_MAX];
	struct share s;
	struct cfg cfg;
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
	if (optind != argc) {
		help(stderr);
		return EXIT_USAGE;
	}
	cfg_init(&cfg);
	if ((rc = cfg_setup(&cfg, state_opt, NULL, 0)) != EXIT_OK)
		goto out;
	if (share_create(cfg.state_dir, false, &s) < 0) {
		rc = EXIT_FAIL;
		goto out;
	}
	if (share_link(&s, true, link, sizeof(link)) == 0)
		printf("write link: %s\n", link);
	if (share_link(&s, false, link, sizeof(link)) == 0)
		printf("read link:  %s\n", link);
	share_done(&s);
out:
	cfg_done(&cfg);
	return rc;
}

static void link_help(FILE *f)
{
	fprintf(f, "usage: p2pfs link [--read-only] [MOUNTPOINT] [--state DIR]\n\n"
		   "Print the links of a mounted share: the write link (if this node may\n"
		   "write) and the read link.\n\n"
		   "Options:\n"
		   "  --read-only  print only the read link\n"
		   "  --state DIR  the daemon's state directory\n"
		   "  -h, --help   this text\n");
}

int cmd_link(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "read-only", no_argument, NULL, 'r' },
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *req[2] = { "link", "read-only" };
	bool ro = false;
	char *state;
	int c, rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ro = true;
			break;
		case 's':
			state_opt = optarg;
			break;
		case 'h':
			link_help(stdout);
			return EXIT_OK;
		default:
			link_help(stderr);
			return EXIT_USAGE;
		}
	}
	if (argc - optind > 1) {
		link_help(stderr);
		return EXIT_USAGE;
	}
	if (!(state = cli_pick_state(state_opt, optind < argc ? argv[optind] : NULL)))
		return EXIT_NOT_RUNNING;
	rc = ctl_call(state, ro ? 2 : 1, req, false);
	free(state);
	return rc;
}
