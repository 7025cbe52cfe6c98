/* daemon/privs.h: dropping root after the sockets are bound. */
#ifndef DOTWARD_PRIVS_H
#define DOTWARD_PRIVS_H

/* Switches to `user` (and `group`, or the user's primary group when NULL):
 * supplementary groups, then gid, then uid, then checks that root cannot be
 * regained. With user == NULL and group set, only the group changes.
 * Returns 0, or -1 with a message in err (the caller must not go on as root). */
int privs_drop(const char *user, const char *group, char *err, size_t errsz);

#endif
