/* probe/state.h: the probe table kept across restarts (RFC 9539 §4.5: all
 * but `session`, `queries` and `last-activity` "should be kept across
 * restart of the server"). A versioned text file, written atomically and
 * read back at start; docs/STATE.md describes it for operators.
 *
 * Owns nothing between calls. Blocking file I/O: call it at start, from a
 * timer every save-interval, and at exit (a few KB for a few upstreams; at
 * most PROBE_STATE_FILE_MAX).
 *
 * Format, version 1: ASCII text, every line ends in "\n":
 *
 *   dotward-probe-state 1
 *   # saved 2025-05-01T12:00:00Z by dotward 0.1.0
 *   ENTRY...
 *   end COUNT
 *
 * The first line is exactly "dotward-probe-state 1"; another number is a
 * version this code does not read. Lines starting with '#' are comments,
 * blank lines are ignored. "end COUNT" is the last line, COUNT the number
 * of entry lines: a file without it is truncated and read as corrupt.
 * Entries come most recently visited first. Each ENTRY line has exactly
 * 18 tab-separated fields:
 *
 *    1 ip             "192.0.2.1" or "2001:db8::53" (port 853 implied; an
 *                     IPv6 scope is not kept)
 *    2 zone           the zone the IP was first seen for, e.g. "example.org." or "."
 *    3 status         good | bad | unknown (Busy is saved as unknown: the
 *                     probe it was waiting for dies with the process)
 *    4 status_since   \
 *    5 first_seen      | times: UTC seconds since the epoch (the table's clock
 *    6 initiated       | is ev_now(), which libev takes from the wall clock),
 *    7 completed       | with up to 9 decimals ("1714564800.250"); 0 = never;
 *                       the table keeps whole seconds, so dotward writes ".000"
 *                       and drops a fraction when it reads (0.5 is never)
 *    8 last_response  /
 *    9 visits         decimal
 *   10 flags          "-", or letters: v = the certificate verified,
 *                     a = authoritative server (probed without RD)
 *   11 last_outcome   ok | connect-refused | connect-timeout | tls-failed |
 *                     query-timeout | bad-answer | closed-clean | local-error |
 *                     reset
 *   12 reason         text of the last failure; may be empty; at most
 *                     PROBE_REASON_MAX (512) bytes once unescaped
 *   13 probes         \
 *   14 successes       | decimal counters (read up to 2^64-1; an entry keeps
 *                      | 32 bits, larger values are kept as 4294967295)
 *   15 failures       "-", or OUTCOME=COUNT pairs joined by ',' (nonzero only)
 *   16 dot_queries     | decimal counters
 *   17 fallbacks      /
 *   18 session        the TLS resumption session (tls_session_to_text:
 *                     an opaque blob of the TLS back end) in base64
 *                     (RFC 4648, padded), or "-" for none
 *
 * zone and reason escape '\\', control bytes, DEL and bytes >= 0x80 as
 * \xNN (two hex digits); no other escape exists. Not kept: last_activity,
 * the visit window, consecutive DoT failures, the live connection.
 *
 * Reading is all or nothing: any malformed line, a wrong version, a
 * truncated file, a file over PROBE_STATE_FILE_MAX or a line over
 * PROBE_STATE_LINE_MAX rejects the whole file (the caller starts with an
 * empty table). Entries that have run out are dropped, not restored: Good
 * when last_response + persistence <= now, Bad when completed + damping
 * <= now, unknown when its newest time + damping <= now. Times later
 * than `now` (a clock that went back) are taken as `now`. A session the
 * TLS library cannot read any more is dropped, the entry is kept. */
#ifndef DOTWARD_PROBE_STATE_H
#define DOTWARD_PROBE_STATE_H

#include <stddef.h>

struct probe_table;

#define PROBE_STATE_MAGIC "dotward-probe-state"
#define PROBE_STATE_VERSION 1
/* A file over this is rejected without being read; a save stops writing
 * entries (least recently visited last) before the file would exceed it. */
#define PROBE_STATE_FILE_MAX (16u << 20)
/* Longest line with its "\n". A session that would make a line longer is
 * not saved (that entry is saved without one). */
#define PROBE_STATE_LINE_MAX (16u << 10)

/* No state file at `path` (first start): not an error worth a warning. */
#define PROBE_STATE_MISSING (-2)

/* Writes every entry of `t` to `path`, atomically: a new file
 * `path`.tmp.<pid> in the same directory (mode 0600: it holds resumption
 * secrets), flushed and fsync'ed, renamed over `path`, then the directory
 * fsync'ed. On any failure `path` is left as it was and the temporary
 * file removed. `now` (ev_now()) goes into the comment line. Returns the
 * number of entries written, or -1 with a message in err. */
int probe_state_save(const struct probe_table *t, const char *path, double now, char *err, size_t errsz);

/* Reads `path` into `t` (normally empty: IPs already in it keep their
 * entry), dropping entries that have run out by `now` under t's policy.
 * Logs one info line with what was restored. Returns the number of
 * entries restored; PROBE_STATE_MISSING if there is no file; -1 with a
 * message in err if the file is unusable (nothing is restored then). */
int probe_state_load(struct probe_table *t, const char *path, double now, char *err, size_t errsz);

#endif
