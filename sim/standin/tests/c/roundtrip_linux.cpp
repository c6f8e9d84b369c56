// A C++ client over the Linux class API (Microsoft's Linux vdi.h
// declarations): a striped BACKUP then RESTORE through the in-process
// server, checked byte for byte, plus bad input.
// Usage: roundtrip_linux <set-name-prefix> <expected-total-bytes>
#include "vdisim_vdi.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#define CHECK(cond, ...)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);       \
            std::fprintf(stderr, __VA_ARGS__);                              \
            std::fprintf(stderr, "\n");                                     \
            std::exit(1);                                                   \
        }                                                                   \
    } while (0)

static const int NDEV = 2;

struct Media {
    std::vector<uint8_t> data;
    size_t cursor = 0;
};

static void device_loop(ClientVirtualDeviceSet *set, std::string name, Media *m, bool first_dev,
                        bool restoring, ClientVirtualDevice **out) {
    ClientVirtualDevice *dev = nullptr;
    int rc = set->OpenDevice(const_cast<char *>(name.c_str()), &dev);
    CHECK(rc == NOERROR && dev, "OpenDevice(%s) = %d", name.c_str(), rc);
    bool first = true;
    for (;;) {
        VDC_Command *cmd = nullptr;
        rc = dev->GetCommand(-1, &cmd);
        if (rc == VD_E_CLOSE)
            break;
        CHECK(rc == NOERROR && cmd, "GetCommand = %d", rc);
        int code = ERROR_SUCCESS;
        unsigned long bytes = 0;
        switch (cmd->commandCode) {
        case VDC_Write:
            m->data.insert(m->data.end(), cmd->buffer, cmd->buffer + cmd->size);
            bytes = (unsigned long)cmd->size;
            break;
        case VDC_Read: {
            size_t left = m->data.size() - m->cursor;
            size_t n = left < (size_t)cmd->size ? left : (size_t)cmd->size;
            if (n == 0)
                code = ERROR_HANDLE_EOF;
            std::memcpy(cmd->buffer, m->data.data() + m->cursor, n);
            m->cursor += n;
            bytes = n;
            break;
        }
        case VDC_Flush:
        case VDC_ClearError:
            break;
        default:
            code = ERROR_NOT_SUPPORTED;
        }
        if (first && first_dev && !restoring)
            cmd->position = 4242; // writes into the read-only block: recorded, not refused
        rc = dev->CompleteCommand(cmd, code, bytes, 0);
        CHECK(rc == NOERROR, "CompleteCommand = %d", rc);
        if (first) {
            first = false;
            rc = dev->CompleteCommand(cmd, ERROR_SUCCESS, 0, 0);
            CHECK(rc == VD_E_INVALID, "stale CompleteCommand = %d", rc);
            VDC_Command foreign = {};
            rc = dev->CompleteCommand(&foreign, ERROR_SUCCESS, 0, 0);
            CHECK(rc == VD_E_INVALID, "foreign CompleteCommand = %d", rc);
            rc = dev->GetCommand(0, nullptr);
            CHECK(rc == VD_E_INVALID, "GetCommand(null) = %d", rc);
        }
    }
    *out = dev;
}

int main(int argc, char **argv) {
    const char *prefix = argc > 1 ? argv[1] : "vdisim-cpp";
    unsigned long long expected = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 0;
    std::string setname = std::string(prefix) + "-" + std::to_string(getpid());
    std::vector<std::string> names{setname};
    for (int i = 1; i < NDEV; i++)
        names.push_back(setname + "-dev" + std::to_string(i));

    static_assert(sizeof(ClientVirtualDeviceSet) == 8, "one pointer");
    static_assert(sizeof(ClientVirtualDevice) == 8, "one pointer");

    // An object whose constructor never ran is refused, not trusted.
    alignas(8) unsigned char raw[8] = {};
    CHECK(reinterpret_cast<ClientVirtualDeviceSet *>(raw)->Close() == VD_E_INVALID, "raw object");

    ClientVirtualDeviceSet *set = new ClientVirtualDeviceSet();
    Media media[NDEV];
    VDConfig cfg;
    std::memset(&cfg, 0, sizeof cfg);
    cfg.deviceCount = NDEV;
    CHECK(set->Create(nullptr, &cfg) == VD_E_INVALID, "Create(null name)");
    CHECK(set->Create(const_cast<char *>(setname.c_str()), nullptr) == VD_E_INVALID,
          "Create(null cfg)");
    VDConfig zero = {};
    CHECK(set->Create(const_cast<char *>(setname.c_str()), &zero) == VD_E_NOTSUPPORTED,
          "Create(deviceCount 0)");
    CHECK(set->Close() == VD_E_PROTOCOL, "Close before Create");

    for (int phase = 0; phase < 2; phase++) {
        int rc = set->Create(const_cast<char *>(setname.c_str()), &cfg);
        CHECK(rc == NOERROR, "Create = %d", rc);
        CHECK(set->GetConfiguration(10000, nullptr) == VD_E_INVALID, "GetConfiguration(null)");
        VDConfig got;
        rc = set->GetConfiguration(10000, &got);
        CHECK(rc == NOERROR, "GetConfiguration = %d", rc);
        CHECK(got.features & (phase ? VDF_ReadMedia : VDF_WriteMedia), "features %x", got.features);
        ClientVirtualDevice *bad = reinterpret_cast<ClientVirtualDevice *>(1);
        rc = set->OpenDevice(const_cast<char *>("nope"), &bad);
        CHECK(rc == VD_E_INVALID && bad == nullptr, "OpenDevice(nope) = %d", rc);
        CHECK(set->OpenDevice(const_cast<char *>(setname.c_str()), nullptr) == VD_E_INVALID,
              "OpenDevice(null out)");

        ClientVirtualDevice *devs[NDEV] = {};
        std::vector<std::thread> threads;
        for (int i = 0; i < NDEV; i++)
            threads.emplace_back(device_loop, set, names[i], &media[i], i == 0, phase == 1,
                                 &devs[i]);
        for (auto &t : threads)
            t.join();
        rc = set->Close();
        CHECK(rc == NOERROR, "Close = %d", rc);
        CHECK(set->Close() == VD_E_PROTOCOL, "double Close");
        VDC_Command *c = reinterpret_cast<VDC_Command *>(1);
        rc = devs[0]->GetCommand(0, &c);
        CHECK(rc == VD_E_PROTOCOL && c == nullptr, "device after Close = %d", rc);
        VDC_Command foreign = {};
        rc = devs[1]->CompleteCommand(&foreign, 0, 0, 0);
        CHECK(rc == VD_E_PROTOCOL, "CompleteCommand after Close = %d", rc);
        set->RegisterDeviceClosed();

        char json[16384];
        int st = vdisim_statement_outcome(10000, json, sizeof json, nullptr);
        std::printf("%s outcome: %s\n", phase ? "RESTORE" : "BACKUP", json);
        CHECK(st == VDISIM_OUTCOME_SUCCEEDED, "statement %d status %d", phase, st);

        if (phase == 0) {
            unsigned long long total = 0;
            uint64_t origin[NDEV];
            for (int i = 0; i < NDEV; i++) {
                const auto &d = media[i].data;
                CHECK(!d.empty(), "device %d received nothing", i);
                // The 64 KiB media header, then blocks tagged with their
                // stream and media position.
                CHECK(d.size() >= 65536 && std::memcmp(d.data(), "VDISIMMF", 8) == 0,
                      "dev %d: no media header", i);
                for (size_t off = 65536; off < d.size(); off += 512) {
                    uint64_t o, pos;
                    std::memcpy(&o, d.data() + off, 8);
                    std::memcpy(&pos, d.data() + off + 8, 8);
                    if (off == 65536)
                        origin[i] = o;
                    CHECK(o == origin[i] && pos == off, "dev %d block at %zu", i, off);
                }
                total += d.size();
            }
            CHECK(origin[0] != origin[1], "families share an origin");
            CHECK(expected == 0 || total == expected, "total %llu expected %llu", total, expected);
        } else {
            for (int i = 0; i < NDEV; i++)
                CHECK(media[i].cursor == media[i].data.size(), "device %d read %zu of %zu", i,
                      media[i].cursor, media[i].data.size());
        }
    }
    CHECK(vdisim_block_modifications() == 1, "modifications %llu",
          (unsigned long long)vdisim_block_modifications());
    delete set;
    std::printf("OK\n");
    return 0;
}
