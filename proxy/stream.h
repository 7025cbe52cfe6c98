/* proxy/stream.h: one upstream stream connection (Do53 over TCP).
 *
 * The upstream owns its stream. A stream connects on first use, pipelines
 * queries with IDs of its own (unique on the connection), matches answers by
 * ID and question in any order, and closes when idle. When the connection
 * fails or the server closes it, every try still waiting on it is handed
 * back to its query with query_on_try_failed(). */
#ifndef DOTWARD_STREAM_H
#define DOTWARD_STREAM_H

struct proxy;
struct query;
struct query_try;
struct upstream;

struct stream *stream_new(struct proxy *px, struct upstream *up);  /* up is borrowed: it owns us */
void stream_free(struct stream *s);
/* Queues `q`'s message for try `t`. Returns 0, or -1 (too many in flight,
 * no memory): the caller treats that as a failed try. */
int stream_send(struct stream *s, struct query *q, struct query_try *t);
void stream_cancel(struct stream *s, struct query_try *t);

#endif
