// SPDX-License-Identifier: MIT
/*
 * daemon/cfg.c - settings: defaults, the optional DIR/config file, and the
 * state directory layout.
 *
 * State directory (mode 0700):
 *   lock          held (flock) by the running daemon; holds its pid and mount point
 *   config        optional settings, "key = value" per line
 *   node.key      the node's identity (0600)
 *   shares/       one directory per share: its keys and its namespace log
 *   store/        the chunk store, shared by all shares (dedup across them)
 *   staging/      files being written (O_TMPFILE: nothing survives a crash)
 *   ctl.sock      the control socket
 *   p2pfs.log     the daemon's log when it runs in the background
 */
#include "daemon/daemon.h"
#include "common/util.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

void cfg_init(struct cfg *c)
{
	memset(c, 0, sizeof(*c));
	c->cache_size = 10 * GiB;
	c->log_level = LOG_LVL_INFO;
	c->writeback_cache = true;
	c->read_ahead_kb = 4096;
	c->commit_ms = 1000;
	c->lan = true;
}

void cfg_done(struct cfg *c)
{
	free(c->state_dir);
	free(c->mountpoint);
	free(c->share_link);
	for (unsigned i = 0; i < c->nlisten; i++)
		free(c->listen[i]);
	for (unsigned i = 0; i < c->nbootstrap; i++)
		free(c->bootstrap[i]);
	for (unsigned i = 0; i < c->npeer; i++)
		free(c->peer[i]);
	memset(c, 0, sizeof(*c));
}

char *cfg_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

char *cfg_default_state_dir(void)
{
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");
	char *p = NULL;

	if (geteuid() == 0)
		return strdup("/var/lib/p2pfs");
	if (xdg && *xdg == '/') {
		if (asprintf(&p, "%s/p2pfs", xdg) < 0)
			return NULL;
		return p;
	}
	if (!home || !*home) {
		struct passwd *pw = getpwuid(geteuid());

		home = pw ? pw->pw_dir : "/tmp";
	}
	if (asprintf(&p, "%s/.local/share/p2pfs", home) < 0)
		return NULL;
	return p;
}

static int parse_bool(const char *v, bool *ret)
{
	if (!strcasecmp(v, "yes") || !strcasecmp(v, "true") || !strcmp(v, "1") ||
	    !strcasecmp(v, "on")) {
		*ret = true;
		return 0;
	}
	if (!strcasecmp(v, "no") || !strcasecmp(v, "false") || !strcmp(v, "0") ||
	    !strcasecmp(v, "off")) {
		*ret = false;
		return 0;
	}
	return -EINVAL;
}

static int parse_uint(const char *v, unsigned max, unsigned *ret)
{
	char *end;
	unsigned long x;

	errno = 0;
	x = strtoul(v, &end, 10);
	if (errno || end == v || *end || x > max)
		return -EINVAL;
	*ret = (unsigned)x;
	return 0;
}

/* "20M" (bytes per second, as sizes), or "100mbit" / "1gbit" / "500kbit". */
static int parse_rate(const char *v, uint64_t *ret)
{
	size_t l = strlen(v);

	if (l > 3 && !strcasecmp(v + l - 3, "bit")) {
		char num[32], *end;
		double x, mul = 1;
		size_t nl = l - 3;

		if (nl >= sizeof(num))
			return -EINVAL;
		memcpy(num, v, nl);
		num[nl] = '\0';
		if (nl && strchr("kKmMgG", num[nl - 1])) {
			char u = (char)tolower((unsigned char)num[nl - 1]);

			mul = u == 'k' ? 1e3 : u == 'm' ? 1e6 : 1e9;
			num[--nl] = '\0';
		}
		errno = 0;
		x = strtod(num, &end);
		if (errno || end == num || *end || x <= 0)
			return -EINVAL;
		*ret = (uint64_t)(x * mul / 8);
		return *ret ? 0 : -EINVAL;
	}
	return p2p_parse_size(v, ret);
}

static int add_addr(char **list, unsigned *n, const char *v, const char *where, const char *key)
{
	if (*n >= CFG_MAX_ADDRS) {
		cli_err("%s: at most %d '%s' addresses", where, CFG_MAX_ADDRS, key);
		return -E2BIG;
	}
	if (!strchr(v, ':')) {
		cli_err("%s: '%s' needs HOST:PORT, got '%s'", where, key, v);
		return -EINVAL;
	}
	if (!(list[*n] = strdup(v)))
		return -ENOMEM;
	(*n)++;
	return 0;
}

int cfg_set(struct cfg *c, const char *key, const char *v, const char *where)
{
	int rc = 0;

	if (!strcmp(key, "cache-size") || !strcmp(key, "cache_size")) {
		if ((rc = p2p_parse_size(v, &c->cache_size)) < 0)
			cli_err("%s: cache size '%s' is not a size like 20G or 512M", where, v);
	} else if (!strcmp(key, "log-level") || !strcmp(key, "log_level")) {
		if ((rc = log_parse_level(v, &c->log_level)) < 0)
			cli_err("%s: log level '%s': use error, warn, notice, info or debug", where,
				v);
	} else if (!strcmp(key, "writeback-cache") || !strcmp(key, "writeback_cache")) {
		if ((rc = parse_bool(v, &c->writeback_cache)) < 0)
			cli_err("%s: writeback-cache '%s': use yes or no", where, v);
	} else if (!strcmp(key, "read-ahead-kb") || !strcmp(key, "read_ahead_kb")) {
		if ((rc = parse_uint(v, 1U << 20, &c->read_ahead_kb)) < 0)
			cli_err("%s: read-ahead-kb '%s' is not a number of KiB", where, v);
	} else if (!strcmp(key, "commit-interval-ms") || !strcmp(key, "commit_interval_ms")) {
		if ((rc = parse_uint(v, 3600000, &c->commit_ms)) < 0 || c->commit_ms == 0) {
			cli_err("%s: commit-interval-ms '%s' must be 1..3600000", where, v);
			rc = -EINVAL;
		}
	} else if (!strcmp(key, "listen")) {
		rc = add_addr(c->listen, &c->nlisten, v, where, key);
	} else if (!strcmp(key, "bootstrap")) {
		rc = add_addr(c->bootstrap, &c->nbootstrap, v, where, key);
	} else if (!strcmp(key, "peer")) {
		rc = add_addr(c->peer, &c->npeer, v, where, key);
	} else if (!strcmp(key, "fetch-timeout") || !strcmp(key, "fetch_timeout")) {
		if ((rc = parse_uint(v, 86400, &c->fetch_timeout_s)) < 0 ||
		    c->fetch_timeout_s == 0) {
			cli_err("%s: fetch-timeout '%s' must be 1..86400 seconds", where, v);
			rc = -EINVAL;
		}
	} else if (!strcmp(key, "max-upload") || !strcmp(key, "max_upload") ||
		   !strcmp(key, "max-download") || !strcmp(key, "max_download")) {
		uint64_t *r = strstr(key, "upload") ? &c->max_upload : &c->max_download;

		if ((rc = parse_rate(v, r)) < 0)
			cli_err("%s: %s '%s' is not a rate like 20M (bytes/s) or 100mbit", where,
				key, v);
	} else if (!strcmp(key, "max-peers") || !strcmp(key, "max_peers")) {
		if ((rc = parse_uint(v, 1024, &c->max_peers)) < 0 || c->max_peers == 0) {
			cli_err("%s: max-peers '%s' must be 1..1024", where, v);
			rc = -EINVAL;
		}
	} else if (!strcmp(key, "share")) {
		free(c->share_link);
		if (!(c->share_link = strdup(v)))
			rc = -ENOMEM;
	} else if (!strcmp(key, "lan-discovery") || !strcmp(key, "lan_discovery")) {
		if ((rc = parse_bool(v, &c->lan)) < 0)
			cli_err("%s: lan-discovery '%s': use yes or no", where, v);
	} else if (!strcmp(key, "dht-provider-ttl") || !strcmp(key, "dht_provider_ttl")) {
		if ((rc = parse_uint(v, 7 * 24 * 3600, &c->provider_ttl_s)) < 0 ||
		    c->provider_ttl_s < 10) {
			cli_err("%s: dht-provider-ttl '%s' must be 10..604800 seconds", where, v);
			rc = -EINVAL;
		}
	} else {
		cli_err("%s: unknown setting '%s'", where, key);
		rc = -EINVAL;
	}
	return rc;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int cfg_load_file(struct cfg *c, const char *state_dir)
{
	char *path = cfg_path(state_dir, "config");
	char line[1024];
	unsigned lineno = 0;
	FILE *f;
	int rc = 0;

	if (!path)
		return -ENOMEM;
	if (!(f = fopen(path, "re"))) {
		rc = errno == ENOENT ? 0 : -errno;
		if (rc)
			cli_err("cannot read %s: %s", path, strerror(-rc));
		free(path);
		return rc;
	}
	while (fgets(line, sizeof(line), f)) {
		char where[4200], *eq, *k, *v, *hash = strchr(line, '#');

		lineno++;
		if (hash)
			*hash = '\0';
		k = trim(line);
		if (!*k)
			continue;
		snprintf(where, sizeof(where), "%s:%u", path, lineno);
		if (!(eq = strchr(k, '='))) {
			cli_err("%s: expected 'key = value'", where);
			rc = -EINVAL;
			break;
		}
		*eq = '\0';
		v = trim(eq + 1);
		k = trim(k);
		if ((rc = cfg_set(c, k, v, where)) < 0)
			break;
	}
	fclose(f);
	free(path);
	return rc;
}

static int mkdir_p(const char *dir, mode_t mode)
{
	char *p = strdup(dir), *s;
	int rc = 0;

	if (!p)
		return -ENOMEM;
	for (s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) < 0 && errno != EEXIST) {
			rc = -errno;
			break;
		}
		*s = '/';
	}
	if (!rc && mkdir(p, mode) < 0 && errno != EEXIST)
		rc = -errno;
	free(p);
	return rc;
}

int cfg_prepare_state_dir(const char *dir)
{
	static const char *const sub[] = { "shares", "store", "staging" };
	struct stat st;
	int rc;

	if ((rc = mkdir_p(dir, 0700)) < 0)
		goto err;
	if (stat(dir, &st) < 0) {
		rc = -errno;
		goto err;
	}
	if (!S_ISDIR(st.st_mode)) {
		cli_err("state directory %s is not a directory", dir);
		return -ENOTDIR;
	}
	for (unsigned i = 0; i < ARRAY_SIZE(sub); i++) {
		char *p = cfg_path(dir, sub[i]);

		if (!p)
			return -ENOMEM;
		rc = mkdir(p, 0700) < 0 && errno != EEXIST ? -errno : 0;
		free(p);
		if (rc < 0)
			goto err;
	}
	return 0;
err:
	if (rc == -ENOSPC || rc == -EDQUOT)
		cli_err("no space left to create the state directory %s: free some space, or use "
			"--state DIR on another disk",
			dir);
	else if (rc == -EACCES || rc == -EPERM || rc == -EROFS)
		cli_err("cannot create the state directory %s: %s (use --state DIR somewhere "
			"writable)",
			dir, strerror(-rc));
	else
		cli_err("cannot create the state directory %s: %s", dir, strerror(-rc));
	return rc;
}

int cfg_setup(struct cfg *c, const char *state_opt, const struct cfg_opt *set, unsigned nset)
{
	char *st = state_opt ? strdup(state_opt) : cfg_default_state_dir();

	if (!st)
		return EXIT_FAIL;
	if (cfg_prepare_state_dir(st) < 0) {
		free(st);
		return EXIT_FAIL;
	}
	c->state_dir = realpath(st, NULL);
	free(st);
	if (!c->state_dir)
		return EXIT_FAIL;
	if (cfg_load_file(c, c->state_dir) < 0)
		return EXIT_USAGE;
	for (unsigned i = 0; i < nset; i++)
		if (cfg_set(c, set[i].key, set[i].val, "command line") < 0)
			return EXIT_USAGE;
	return EXIT_OK;
}
