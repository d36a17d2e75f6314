// SPDX-License-Identifier: MIT
/*
 * daemon/ctl.c - the control socket: the daemon's side on the event loop,
 * and the client that commands use (protocol in daemon.h).
 *
 * Server invariants:
 *  1. A connection carries one request; its reply may take long (umount,
 *     scrub) and is written as it is produced.
 *  2. A receive stays queued after the request so a client that hangs up is
 *     noticed (ctl_gone) and long operations can stop.
 *  3. A connection is freed only when no operation is in flight on it, and
 *     once its request was dispatched, only after ctl_end(): whoever
 *     handles a request may hold the connection until it answers.
 */
#define LOG_SUBSYS "ctl"
#include "daemon/daemon.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_REQ_MAX 65536
#define CTL_ARGS_MAX 64

struct ctl_server {
	struct ev_loop *loop;
	int fd;
	char *path;
	ctl_handler_fn *fn;
	void *arg;
	struct ev_op accept_op;
	bool closing;
	unsigned conns;
};

struct ctl_conn {
	struct ctl_server *s;
	int fd;
	struct ev_op recv_op, send_op;
	unsigned inflight;
	char *in;
	size_t in_len;
	char scratch[64];
	bool have_request;
	bool cancelled;
	bool send_busy;
	bool gone;
	bool ended;
	char *out; /* bytes queued */
	size_t out_len, out_cap;
	char *sending; /* bytes being sent */
	size_t sending_len, sending_off;
};

static void conn_maybe_free(struct ctl_conn *c)
{
	if (c->ended && !c->out_len && !c->sending && c->inflight && !c->cancelled) {
		/* All said: stop the hang-up watch so the connection can go. */
		c->cancelled = true;
		(void)!ev_cancel(c->s->loop, &c->recv_op);
	}
	/* A request handed to the daemon keeps its connection until ctl_end(),
	 * even after the client hung up: the handler still holds it. */
	if (c->inflight || !(c->ended || c->gone) || (c->have_request && !c->ended))
		return;
	if (c->ended && !c->gone && (c->out_len || c->sending))
		return;
	close(c->fd);
	c->s->conns--;
	free(c->in);
	free(c->out);
	free(c->sending);
	free(c);
}

static void conn_send_more(struct ctl_conn *c);

static void on_send(struct ev_op *op, int32_t res)
{
	struct ctl_conn *c = container_of(op, struct ctl_conn, send_op);

	c->inflight--;
	c->send_busy = false;
	if (res <= 0) {
		c->gone = true;
		free(c->sending);
		c->sending = NULL;
	} else {
		c->sending_off += (size_t)res;
		if (c->sending_off == c->sending_len) {
			free(c->sending);
			c->sending = NULL;
		}
	}
	if (!c->gone)
		conn_send_more(c);
	conn_maybe_free(c);
}

static void conn_send_more(struct ctl_conn *c)
{
	if (c->gone || c->send_busy)
		return;
	if (!c->sending) {
		if (!c->out_len)
			return;
		c->sending = c->out;
		c->sending_len = c->out_len;
		c->sending_off = 0;
		c->out = NULL;
		c->out_len = c->out_cap = 0;
	}
	if (ev_send(c->s->loop, &c->send_op, c->fd, c->sending + c->sending_off,
		    c->sending_len - c->sending_off, MSG_NOSIGNAL) < 0) {
		c->gone = true;
		return;
	}
	c->send_busy = true;
	c->inflight++;
}

static void conn_put(struct ctl_conn *c, char tag, const char *fmt, va_list ap)
{
	va_list aq;
	int n;

	if (c->gone || c->ended)
		return;
	va_copy(aq, ap);
	n = vsnprintf(NULL, 0, fmt, aq);
	va_end(aq);
	if (n < 0)
		return;
	if (c->out_len + (size_t)n + 4 > c->out_cap) {
		size_t cap = P2P_MAX(c->out_cap * 2, c->out_len + (size_t)n + 4 + 256);
		char *o = realloc(c->out, cap);

		if (!o)
			return;
		c->out = o;
		c->out_cap = cap;
	}
	c->out[c->out_len++] = tag;
	c->out[c->out_len++] = ' ';
	vsnprintf(c->out + c->out_len, (size_t)n + 1, fmt, ap);
	/* One line per message: newlines inside become spaces. */
	for (int i = 0; i < n; i++)
		if (c->out[c->out_len + (size_t)i] == '\n')
			c->out[c->out_len + (size_t)i] = ' ';
	c->out_len += (size_t)n;
	c->out[c->out_len++] = '\n';
	conn_send_more(c);
}

void ctl_printf(struct ctl_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_put(c, '.', fmt, ap);
	va_end(ap);
}

void ctl_progress(struct ctl_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_put(c, '~', fmt, ap);
	va_end(ap);
}

void ctl_note(struct ctl_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_put(c, '!', fmt, ap);
	va_end(ap);
}

static void end_fmt(struct ctl_conn *c, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	conn_put(c, '=', fmt, ap);
	va_end(ap);
}

void ctl_end(struct ctl_conn *c, int code, const char *fmt, ...)
{
	char msg[1024] = "";

	if (fmt) {
		va_list ap;

		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (code)
		end_fmt(c, "%d %s", code, msg);
	else
		end_fmt(c, "0");
	c->ended = true;
	conn_maybe_free(c);
}

bool ctl_gone(const struct ctl_conn *c)
{
	return c->gone;
}

static void dispatch(struct ctl_conn *c)
{
	char *argv[CTL_ARGS_MAX + 1];
	int argc = 0;
	char *save, *tok;

	c->in[c->in_len] = '\0';
	for (tok = strtok_r(c->in, "\t", &save); tok && argc < CTL_ARGS_MAX;
	     tok = strtok_r(NULL, "\t", &save))
		argv[argc++] = tok;
	argv[argc] = NULL;
	if (argc == 0) {
		ctl_end(c, EXIT_USAGE, "empty request");
		return;
	}
	c->s->fn(c->s->arg, c, argc, argv);
}

static void watch_hangup(struct ctl_conn *c)
{
	if (ev_recv(c->s->loop, &c->recv_op, c->fd, c->scratch, sizeof(c->scratch), 0) == 0)
		c->inflight++;
}

static void on_recv(struct ev_op *op, int32_t res)
{
	struct ctl_conn *c = container_of(op, struct ctl_conn, recv_op);
	char *nl;

	c->inflight--;
	if (res <= 0) {
		c->gone = true;
		conn_maybe_free(c);
		return;
	}
	if (c->have_request) {
		/* Bytes after the request are ignored; keep watching for the hang-up. */
		if (!c->ended)
			watch_hangup(c);
		conn_maybe_free(c);
		return;
	}
	c->in_len += (size_t)res;
	if (!(nl = memchr(c->in, '\n', c->in_len))) {
		if (c->in_len >= CTL_REQ_MAX) {
			c->have_request = true;
			ctl_end(c, EXIT_USAGE, "request too long");
			return;
		}
		if (ev_recv(c->s->loop, &c->recv_op, c->fd, c->in + c->in_len,
			    CTL_REQ_MAX - c->in_len, 0) == 0)
			c->inflight++;
		else
			c->gone = true;
		conn_maybe_free(c);
		return;
	}
	c->in_len = (size_t)(nl - c->in);
	c->have_request = true;
	watch_hangup(c); /* into c->scratch: c->in now holds the argument strings */
	dispatch(c);
}

static void on_accept(struct ev_op *op, int32_t res)
{
	struct ctl_server *s = container_of(op, struct ctl_server, accept_op);
	struct ctl_conn *c;

	if (s->closing) {
		if (res >= 0)
			close(res);
		close(s->fd);
		free(s->path);
		free(s);
		return;
	}
	if (res >= 0) {
		c = calloc(1, sizeof(*c));
		if (c && (c->in = malloc(CTL_REQ_MAX + 1))) {
			c->s = s;
			c->fd = res;
			ev_op_init(&c->recv_op, on_recv);
			ev_op_init(&c->send_op, on_send);
			s->conns++;
			if (ev_recv(s->loop, &c->recv_op, c->fd, c->in, CTL_REQ_MAX, 0) == 0) {
				c->inflight++;
			} else {
				c->gone = true;
				conn_maybe_free(c);
			}
		} else {
			if (c)
				free(c);
			close(res);
		}
	} else if (res != -EINTR && res != -ECONNABORTED) {
		log_warn("accept on the control socket: %s", strerror(-res));
	}
	if (ev_accept(s->loop, &s->accept_op, s->fd, NULL, NULL) < 0)
		log_error("cannot accept on the control socket any more (ring full)");
}

int ctl_server_new(struct ev_loop *loop, const char *path, ctl_handler_fn *fn, void *arg,
		   struct ctl_server **ret)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ctl_server *s;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		log_error("control socket path %s is too long (max %zu bytes)", path,
			  sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	if (!(s = calloc(1, sizeof(*s))) || !(s->path = strdup(path))) {
		free(s);
		return -ENOMEM;
	}
	s->loop = loop;
	s->fn = fn;
	s->arg = arg;
	strcpy(sa.sun_path, path);
	s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->fd < 0) {
		rc = -errno;
		goto err;
	}
	unlink(path); /* a leftover from a daemon that died; the state lock says we own it */
	if (bind(s->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0600) < 0 ||
	    listen(s->fd, 16) < 0) {
		rc = -errno;
		close(s->fd);
		goto err;
	}
	ev_op_init(&s->accept_op, on_accept);
	if ((rc = ev_accept(loop, &s->accept_op, s->fd, NULL, NULL)) < 0) {
		close(s->fd);
		goto err;
	}
	*ret = s;
	return 0;
err:
	log_error("cannot listen on %s: %s", path, strerror(-rc));
	free(s->path);
	free(s);
	return rc;
}

void ctl_server_free(struct ctl_server *s)
{
	if (!s)
		return;
	unlink(s->path);
	s->closing = true;
	/* The accept completes with -ECANCELED and frees the server. */
	if (ev_cancel(s->loop, &s->accept_op) < 0) {
		close(s->fd);
		s->fd = -1;
	}
}

/* ---- client ---- */

static int connect_ctl(const char *state_dir)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/ctl.sock", state_dir) >=
	    sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	return fd;
}

int ctl_call(const char *state_dir, int argc, const char *const *argv, bool quiet)
{
	bool tty = cli_is_tty(stderr), progress_shown = false;
	char *req = NULL, buf[65536];
	size_t req_len = 0, have = 0;
	int fd, code = EXIT_FAIL;
	FILE *ms;

	if ((fd = connect_ctl(state_dir)) < 0) {
		if (!quiet) {
			if (fd == -ENOENT || fd == -ECONNREFUSED)
				cli_err("no p2pfs daemon is running for %s", state_dir);
			else
				cli_err("cannot reach the daemon of %s: %s", state_dir,
					strerror(-fd));
		}
		return EXIT_NOT_RUNNING;
	}
	if (!(ms = open_memstream(&req, &req_len))) {
		close(fd);
		return EXIT_FAIL;
	}
	for (int i = 0; i < argc; i++)
		fprintf(ms, "%s%s", i ? "\t" : "", argv[i]);
	fputc('\n', ms);
	fclose(ms);
	if (send(fd, req, req_len, MSG_NOSIGNAL) != (ssize_t)req_len) {
		cli_err("cannot send to the daemon: %s", strerror(errno));
		free(req);
		close(fd);
		return EXIT_FAIL;
	}
	free(req);
	for (;;) {
		ssize_t n = recv(fd, buf + have, sizeof(buf) - 1 - have, 0);
		char *line, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (progress_shown)
				fputc('\n', stderr);
			cli_err("the daemon closed the connection before answering (see its log)");
			code = EXIT_FAIL;
			break;
		}
		have += (size_t)n;
		buf[have] = '\0';
		line = buf;
		while ((nl = strchr(line, '\n'))) {
			char tag = line[0];
			const char *text = line[1] == ' ' ? line + 2 : line + 1;

			*nl = '\0';
			if (progress_shown && tag != '~') {
				fputs("\r\033[K", stderr);
				progress_shown = false;
			}
			switch (tag) {
			case '.':
				puts(text);
				break;
			case '~':
				if (tty) {
					fprintf(stderr, "\r\033[K%s", text);
					progress_shown = true;
				}
				break;
			case '!':
				fprintf(stderr, "p2pfs: %s\n", text);
				break;
			case '=': {
				char *msg;

				code = (int)strtol(text, &msg, 10);
				while (*msg == ' ')
					msg++;
				if (code && *msg)
					cli_err("%s", msg);
				fflush(stdout);
				close(fd);
				return code;
			}
			default:
				break;
			}
			line = nl + 1;
		}
		fflush(stdout);
		have = (size_t)(buf + have - line);
		memmove(buf, line, have);
		if (have >= sizeof(buf) - 1)
			have = 0; /* an over-long line: drop it */
	}
	close(fd);
	return code;
}
