// SPDX-License-Identifier: MIT
/*
 * daemon/main.c - `p2pfs COMMAND ...`: dispatch to one file per command.
 */
#include "daemon/daemon.h"

#include <stdio.h>
#include <string.h>

struct command {
	const char *name;
	int (*fn)(int argc, char **argv);
	const char *summary;
};

static const struct command commands[] = {
	{ "mount", cmd_mount, "mount a share at a directory (starts the daemon)" },
	{ "umount", cmd_umount, "flush, unmount and stop the daemon" },
	{ "status", cmd_status, "what the daemon is doing: files, storage, cache, activity" },
	{ "sync", cmd_sync, "make every change so far durable on disk" },
	{ "scrub", cmd_scrub, "re-verify every stored chunk against its id" },
	{ "pin", cmd_pin, "fetch files completely from peers and keep them" },
	{ "unpin", cmd_unpin, "let pinned files be evicted from the cache again" },
	{ "peers", cmd_peers, "the share's members: addresses, traffic, requests" },
	{ "init", cmd_init, "create a new share and print its write and read links" },
	{ "link", cmd_link, "print the links of a mounted share" },
	{ "node", cmd_node, "run a DHT node with no mount (e.g. a bootstrap node)" },
	{ "stop", cmd_stop, "stop a daemon (a node, or a mount like umount)" },
	{ "dht", cmd_dht, "ask the DHT: find-node, provide, providers, bootstrap" },
};

static void usage(FILE *f)
{
	fprintf(f, "usage: p2pfs COMMAND [ARGS...]\n\n"
		   "A decentralized filesystem: files are shared as content-addressed chunks\n"
		   "between peers, and mounted as an ordinary directory.\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].summary);
	fprintf(f, "\n'p2pfs COMMAND --help' describes each command.\n\n"
		   "Exit codes: 0 success, 1 failure (the message says why), 2 bad usage,\n"
		   "3 no daemon running there, 4 busy (mount in use or state directory locked),\n"
		   "5 scrub found damaged chunks.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		if (argc > 2 && strcmp(argv[1], "help") == 0) {
			char *sub[] = { argv[2], "--help", NULL };

			for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
				if (!strcmp(argv[2], commands[i].name))
					return commands[i].fn(2, sub);
		}
		usage(stdout);
		return EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		printf("p2pfs %s\n", P2PFS_VERSION);
		return EXIT_OK;
	}
	for (size_t i = 0; i < ARRAY_SIZE(commands); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	cli_err("unknown command '%s' (see 'p2pfs --help')", argv[1]);
	return EXIT_USAGE;
}
