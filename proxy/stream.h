/* proxy/stream.h: one upstream stream connection: Do53 over TCP, or DoT.
 *
 * The upstream owns its streams. A stream connects on first use (DoT: to
 * port 853 of the upstream's IP, TLS through tls.h), pipelines queries with
 * IDs of its own (unique on the connection), matches answers by ID and
 * question in any order, and closes when idle (DoT: no later than the
 * server's edns-tcp-keepalive says). Writes queue up during a loop iteration
 * and leave together, so several queries share one TLS record.
 *
 * When the connection fails, the server closes it, or stream_abort() is
 * called, every try still waiting on it is handed back to its query with
 * query_on_try_failed(), with the reason. A DoT stream also reports the
 * outcome to the probe table. */
#ifndef DOTWARD_STREAM_H
#define DOTWARD_STREAM_H

#include <stdbool.h>

#include "probe/table.h"

struct proxy;
struct query;
struct query_try;
struct tls_conn;
struct upstream;

enum stream_kind { STREAM_TCP, STREAM_DOT };

struct stream *stream_new(struct proxy *px, struct upstream *up, enum stream_kind kind); /* up borrowed: it owns us */
void stream_free(struct stream *s);
/* Queues `q`'s message for try `t`. Returns 0, or -1 (too many in flight, no
 * memory, cannot connect now): the caller treats that as a failed try. Never
 * calls back into the query. */
int stream_send(struct stream *s, struct query *q, struct query_try *t);
void stream_cancel(struct stream *s, struct query_try *t);
/* Closes the connection because of `why` (e.g. a query timed out on it, so
 * later queries are not stuck behind a dead peer). */
void stream_abort(struct stream *s, enum probe_outcome why, const char *reason);
/* Takes over a DoT connection a probe established (fd and conn are taken).
 * Returns 0, or -1 if this stream is busy (the caller closes them). */
int stream_adopt(struct stream *s, int fd, struct tls_conn *conn);
bool stream_is_open(const struct stream *s);
unsigned stream_inflight(const struct stream *s);
/* Writes every stream with queued bytes (the loop is about to block). */
void stream_flush_all(struct proxy *px);

#endif
