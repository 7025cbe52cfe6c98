/* daemon/privs.c */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "daemon/privs.h"

int privs_drop(const char *user, const char *group, char *err, size_t errsz)
{
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (user) {
        errno = 0;
        struct passwd *pw = getpwnam(user);
        if (!pw) {
            snprintf(err, errsz, "user '%s': %s", user, errno ? strerror(errno) : "no such user");
            return -1;
        }
        uid = pw->pw_uid;
        gid = pw->pw_gid;
    }
    if (group) {
        errno = 0;
        struct group *gr = getgrnam(group);
        if (!gr) {
            snprintf(err, errsz, "group '%s': %s", group, errno ? strerror(errno) : "no such group");
            return -1;
        }
        gid = gr->gr_gid;
    }
    /* Order matters: once the uid is gone, groups can no longer be changed. */
    if (setgroups(1, &gid) < 0 && geteuid() == 0) {
        snprintf(err, errsz, "setgroups: %s", strerror(errno));
        return -1;
    }
    if (setgid(gid) < 0) {
        snprintf(err, errsz, "setgid(%u): %s", (unsigned)gid, strerror(errno));
        return -1;
    }
    if (user && setuid(uid) < 0) {
        snprintf(err, errsz, "setuid(%u): %s", (unsigned)uid, strerror(errno));
        return -1;
    }
    if (user && uid != 0 && (setuid(0) == 0 || geteuid() == 0)) {
        snprintf(err, errsz, "root could be regained after switching to '%s'", user);
        return -1;
    }
    return 0;
}
