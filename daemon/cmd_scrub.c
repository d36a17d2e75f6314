// SPDX-License-Identifier: MIT
/*
 * daemon/cmd_scrub.c - `p2pfs scrub [MOUNTPOINT]`: re-verify every stored
 * chunk. With a running daemon the daemon does it; with none (--state DIR of
 * a stopped node) this process opens the store itself.
 */
#include "daemon/daemon.h"
#include "chunkstore/store.h"
#include "common/tm.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void help(FILE *f)
{
	fprintf(f,
		"usage: p2pfs scrub [MOUNTPOINT] [--state DIR]\n\n"
		"Read every stored chunk back and check it against its checksum and its\n"
		"SHA-256 id. Damaged chunks are reported and dropped so they can be fetched\n"
		"again. Exit code 5 if any were found. Works on a stopped node too (--state).\n\n"
		"Options:\n"
		"  --state DIR  the node's state directory\n"
		"  -h, --help   this text\n");
}

struct offline {
	bool tty;
	uint64_t last_ms;
	unsigned bad;
};

static void off_bad(void *arg, const uint8_t id[static CS_ID_LEN], int rc)
{
	struct offline *o = arg;
	char hex[65];

	p2p_hex(hex, id, CS_ID_LEN);
	if (o->tty)
		fputs("\r\033[K", stderr);
	printf("damaged: %s (%s)\n", hex, rc == -EBADMSG ? "does not match its id" : strerror(-rc));
	o->bad++;
}

static void off_progress(void *arg, uint64_t done, uint64_t total)
{
	struct offline *o = arg;
	char a[32], b[32];

	if (!o->tty || tm_mono_ms() - o->last_ms < 200)
		return;
	o->last_ms = tm_mono_ms();
	fprintf(stderr, "\r\033[Kscrub: %s of %s checked", p2p_fmt_size(a, sizeof(a), done),
		p2p_fmt_size(b, sizeof(b), total));
}

static int scrub_offline(const char *state)
{
	struct offline o = { .tty = cli_is_tty(stderr) };
	struct cs_store_opts opts = { 0 };
	struct cs_store *cs;
	char *store = cfg_path(state, "store");
	int lock_fd, rc;
	long bad;

	if (!store)
		return EXIT_FAIL;
	if (access(store, F_OK) < 0) {
		cli_err("%s holds no chunk store", state);
		free(store);
		return EXIT_FAIL;
	}
	if ((lock_fd = daemon_lock_state(state, &rc)) < 0) {
		free(store);
		return rc;
	}
	if ((rc = cs_store_open(store, &opts, &cs)) < 0) {
		cli_err("cannot open the chunk store %s: %s", store, strerror(-rc));
		close(lock_fd);
		free(store);
		return EXIT_FAIL;
	}
	bad = cs_scrub(cs, off_bad, off_progress, &o);
	if (o.tty)
		fputs("\r\033[K", stderr);
	rc = cs_store_close(cs);
	close(lock_fd);
	free(store);
	if (bad < 0) {
		cli_err("scrub failed: %s", strerror((int)-bad));
		return EXIT_FAIL;
	}
	if (rc < 0)
		cli_err("closing the store: %s", strerror(-rc));
	printf("scrub: %ld damaged chunk%s\n", bad, bad == 1 ? "" : "s");
	return bad ? EXIT_DATA : EXIT_OK;
}

int cmd_scrub(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *state_opt = NULL, *req[1] = { "scrub" };
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
	rc = ctl_call(state, 1, req, true);
	if (rc == EXIT_NOT_RUNNING)
		rc = scrub_offline(state);
	free(state);
	return rc;
}
