/* The pod sandbox's process: holds the pod's namespaces open, reaps zombies (it is PID 1 of the
 * pod), and exits on SIGINT/SIGTERM. What registry.k8s.io/pause does, built here with
 * `gcc -static` because the node has no registry to pull that image from. */
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int signum) { _exit(0); }

static void reap(int signum) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

int main(void) {
    struct sigaction on_stop = {.sa_handler = stop};
    struct sigaction on_child = {.sa_handler = reap, .sa_flags = SA_NOCLDSTOP};
    if (getpid() != 1)
        fprintf(stderr, "pause: warning: not PID 1\n");
    if (sigaction(SIGINT, &on_stop, NULL) || sigaction(SIGTERM, &on_stop, NULL) || sigaction(SIGCHLD, &on_child, NULL))
        return 1;
    for (;;)
        pause();
}
