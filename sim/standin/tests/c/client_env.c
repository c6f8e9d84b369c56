#define _POSIX_C_SOURCE 199309L
/* The client-test environment seen from a program (no server reachable):
 * `client_env <timeout>` creates a set, waits <timeout> ms for a
 * configuration that never comes, tries an illegal set name (its code
 * comes from the profile), aborts, closes twice. Prints what it saw, one
 * "<what> <value>" line each, then OK. */
#include "vdisim_vdi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void to_u16(uint16_t *out, const char *s) {
    while ((*out++ = (uint16_t)(unsigned char)*s++)) {
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s <GetConfiguration timeout ms>\n", argv[0]);
        return 2;
    }
    DWORD timeout = (DWORD)strtoul(argv[1], NULL, 10);
    char buf[64];
    uint16_t name[64], bad[64];
    snprintf(buf, sizeof buf, "clientenv-%d", (int)getpid());
    to_u16(name, buf);
    to_u16(bad, "a\\b");
    void *p = NULL, *p2 = NULL;
    if (vdisim_CreateClientVirtualDeviceSet(&VDISIM_IID_IUnknown, &p) != S_OK ||
        vdisim_CreateClientVirtualDeviceSet(&VDISIM_IID_IUnknown, &p2) != S_OK) {
        printf("factory failed\n");
        return 1;
    }
    IClientVirtualDeviceSet2 *set = p, *set2 = p2;
    VDConfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = 1;
    printf("create 0x%08x\n", (unsigned)IClientVirtualDeviceSet2_CreateEx(set, NULL, name, &cfg));
    VDConfig got;
    double t0 = now_ms();
    HRESULT hr = IClientVirtualDeviceSet2_GetConfiguration(set, timeout, &got);
    printf("getconfiguration 0x%08x\n", (unsigned)hr);
    printf("elapsed_ms %.0f\n", now_ms() - t0);
    printf("illegal_name 0x%08x\n", (unsigned)IClientVirtualDeviceSet2_Create(set2, bad, &cfg));
    printf("signalabort 0x%08x\n", (unsigned)IClientVirtualDeviceSet2_SignalAbort(set));
    printf("close 0x%08x\n", (unsigned)IClientVirtualDeviceSet2_Close(set));
    printf("close_again 0x%08x\n", (unsigned)IClientVirtualDeviceSet2_Close(set));
    IClientVirtualDeviceSet2_Release(set2);
    IClientVirtualDeviceSet2_Release(set);
    printf("OK\n");
    return 0;
}
