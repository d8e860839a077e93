/*
 * An independent UCX peer for alloctools' interop tests. It knows nothing of alloctools but the
 * wire format docs/messaging.md gives for UCX:
 *   - the 64-bit UCX tag of a message is (tag << 32) | sender id, the sender id being FNV-1a 32
 *     over the sender's worker address bytes;
 *   - a receive from a named peer matches (tag << 32) | id(peer) under the mask
 *     0xffffffff_ffffffff; from any source under 0xffffffff_00000000;
 *   - the payload is the message's bytes.
 * Remote atomics are plain ucp_atomic_op_nbx on the 64-bit word a RemoteRegion names.
 *
 *   c-peer <UCX_TLS> <UCX_NET_DEVICES or ->
 *
 * Prints {"address":"<hex>"}, then answers one JSON line per command line on stdin:
 *   peer <hex address>                      create the ep to the alloctools endpoint
 *   send <tag> <length> <seed>              ucp_tag_send_nbx of the pattern of <seed>
 *   recv <tag> <capacity> <any 0|1> <seed>  ucp_tag_recv_nbx; reports tag, sender, length, mismatch
 *   probe <tag> <seed>                      ucp_tag_probe_nb(remove = 1) + ucp_tag_msg_recv_nbx
 *   fadd <address> <rkey hex> <count> <value>  count x UCP_ATOMIC_OP_ADD; the values fetched
 *   cswap <address> <rkey hex> <compare> <swap> UCP_ATOMIC_OP_CSWAP; the value found
 *   get <address> <rkey hex>                ucp_get_nbx of the 64-bit word
 *   exit
 */
#include <ucp/api/ucp.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ucp_worker_h worker;
static ucp_ep_h ep;
static uint32_t own_id, peer_id;

static uint32_t sender_id(const uint8_t *address, size_t length)
{
    uint32_t id = 2166136261u;
    for (size_t i = 0; i < length; i++) {
        id ^= address[i];
        id *= 16777619u;
    }
    return id;
}

/* The byte pattern of test/rma/pattern.ts. */
static uint8_t pattern_byte(unsigned seed, size_t i)
{
    return (uint8_t)((i * 131 + seed * 17 + (i >> 8) * 7 + 1) & 0xff);
}

static long first_mismatch(const uint8_t *data, size_t length, unsigned seed)
{
    for (size_t i = 0; i < length; i++) {
        if (data[i] != pattern_byte(seed, i)) {
            return (long)i;
        }
    }
    return -1;
}

static ucs_status_t wait_request(void *request)
{
    ucs_status_t status;
    if (request == NULL) {
        return UCS_OK;
    }
    if (UCS_PTR_IS_ERR(request)) {
        return UCS_PTR_STATUS(request);
    }
    while ((status = ucp_request_check_status(request)) == UCS_INPROGRESS) {
        ucp_worker_progress(worker);
    }
    ucp_request_free(request);
    return status;
}

static size_t from_hex(const char *hex, uint8_t *out, size_t capacity)
{
    size_t n = 0;
    while (hex[0] && hex[1] && n < capacity) {
        unsigned byte;
        if (sscanf(hex, "%2x", &byte) != 1) {
            break;
        }
        out[n++] = (uint8_t)byte;
        hex += 2;
    }
    return n;
}

static ucp_rkey_h unpack_rkey(const char *hex)
{
    static uint8_t blob[4096];
    ucp_rkey_h rkey;
    size_t length = from_hex(hex, blob, sizeof(blob));
    (void)length;
    if (ucp_ep_rkey_unpack(ep, blob, &rkey) != UCS_OK) {
        return NULL;
    }
    return rkey;
}

static void report_received(ucs_status_t status, const ucp_tag_recv_info_t *info, const uint8_t *data, size_t capacity, unsigned seed)
{
    uint32_t sender = (uint32_t)(info->sender_tag & 0xffffffffu);
    size_t length = info->length < capacity ? info->length : capacity;
    long after = -1;
    for (size_t i = capacity; i < capacity + 64; i++) {
        if (data[i] != 0xa5) {
            after = (long)(i - capacity);
            break;
        }
    }
    printf("{\"status\":\"%s\",\"tag\":%" PRIu64 ",\"fromPeer\":%s,\"sender\":%u,\"length\":%zu,\"mismatch\":%ld,\"after\":%ld}\n",
           ucs_status_string(status), info->sender_tag >> 32, sender == peer_id ? "true" : "false", sender,
           (size_t)info->length, status == UCS_OK ? first_mismatch(data, length, seed) : -1, after);
}

static void do_send(uint64_t tag, size_t length, unsigned seed)
{
    ucp_request_param_t param = {0};
    uint8_t *buffer = malloc(length + 1);
    for (size_t i = 0; i < length; i++) {
        buffer[i] = pattern_byte(seed, i);
    }
    ucs_status_t status = wait_request(ucp_tag_send_nbx(ep, buffer, length, (tag << 32) | own_id, &param));
    free(buffer);
    printf("{\"status\":\"%s\",\"sent\":%zu}\n", ucs_status_string(status), length);
}

static void do_recv(uint64_t tag, size_t capacity, int any, unsigned seed)
{
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL};
    ucp_tag_recv_info_t info = {0};
    uint8_t *buffer = malloc(capacity + 64);
    memset(buffer, 0xa5, capacity + 64);
    uint64_t match = (tag << 32) | (any ? 0 : peer_id);
    uint64_t mask = any ? 0xffffffff00000000ull : 0xffffffffffffffffull;
    void *request = ucp_tag_recv_nbx(worker, buffer, capacity, match, mask, &param);
    ucs_status_t status;
    if (UCS_PTR_IS_ERR(request)) {
        status = UCS_PTR_STATUS(request);
    } else {
        while ((status = ucp_tag_recv_request_test(request, &info)) == UCS_INPROGRESS) {
            ucp_worker_progress(worker);
        }
        ucp_request_free(request);
    }
    report_received(status, &info, buffer, capacity, seed);
    free(buffer);
}

static void do_probe(uint64_t tag, unsigned seed)
{
    ucp_tag_recv_info_t info;
    ucp_tag_message_h message;
    while ((message = ucp_tag_probe_nb(worker, (tag << 32) | peer_id, 0xffffffffffffffffull, 1, &info)) == NULL) {
        ucp_worker_progress(worker);
    }
    uint8_t *buffer = malloc(info.length + 64);
    memset(buffer, 0xa5, info.length + 64);
    ucp_request_param_t param = {0};
    ucs_status_t status = wait_request(ucp_tag_msg_recv_nbx(worker, buffer, info.length, message, &param));
    report_received(status, &info, buffer, info.length, seed);
    free(buffer);
}

static void do_fadd(uint64_t address, const char *rkey_hex, unsigned long count, uint64_t value)
{
    ucp_rkey_h rkey = unpack_rkey(rkey_hex);
    uint64_t result;
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER,
                                 .datatype = ucp_dt_make_contig(8), .reply_buffer = &result};
    if (rkey == NULL) {
        printf("{\"status\":\"rkey unpack failed\"}\n");
        return;
    }
    printf("{\"fetched\":[");
    for (unsigned long i = 0; i < count; i++) {
        ucs_status_t status = wait_request(ucp_atomic_op_nbx(ep, UCP_ATOMIC_OP_ADD, &value, 1, address, rkey, &param));
        if (status != UCS_OK) {
            printf("],\"status\":\"%s\"}\n", ucs_status_string(status));
            ucp_rkey_destroy(rkey);
            return;
        }
        printf("%s\"%" PRIu64 "\"", i == 0 ? "" : ",", result);
    }
    printf("],\"status\":\"Success\"}\n");
    ucp_rkey_destroy(rkey);
}

static void do_cswap(uint64_t address, const char *rkey_hex, uint64_t compare, uint64_t swap)
{
    ucp_rkey_h rkey = unpack_rkey(rkey_hex);
    uint64_t result = swap; /* CSWAP: the reply buffer holds the value to swap in, then the value found */
    ucp_request_param_t param = {.op_attr_mask = UCP_OP_ATTR_FIELD_DATATYPE | UCP_OP_ATTR_FIELD_REPLY_BUFFER,
                                 .datatype = ucp_dt_make_contig(8), .reply_buffer = &result};
    ucs_status_t status = wait_request(ucp_atomic_op_nbx(ep, UCP_ATOMIC_OP_CSWAP, &compare, 1, address, rkey, &param));
    printf("{\"status\":\"%s\",\"found\":\"%" PRIu64 "\"}\n", ucs_status_string(status), result);
    ucp_rkey_destroy(rkey);
}

static void do_get(uint64_t address, const char *rkey_hex)
{
    ucp_rkey_h rkey = unpack_rkey(rkey_hex);
    uint64_t value = 0;
    ucp_request_param_t param = {0};
    ucs_status_t status = wait_request(ucp_get_nbx(ep, &value, 8, address, rkey, &param));
    printf("{\"status\":\"%s\",\"value\":\"%" PRIu64 "\"}\n", ucs_status_string(status), value);
    ucp_rkey_destroy(rkey);
}

int main(int argc, char **argv)
{
    ucp_config_t *config;
    ucp_context_h context;
    ucp_address_t *address;
    size_t address_length;
    static char line[1 << 16];

    if (argc < 3 || ucp_config_read(NULL, NULL, &config) != UCS_OK) {
        fprintf(stderr, "usage: c-peer <UCX_TLS> <UCX_NET_DEVICES or ->\n");
        return 2;
    }
    ucp_config_modify(config, "TLS", argv[1]);
    if (strcmp(argv[2], "-") != 0) {
        ucp_config_modify(config, "NET_DEVICES", argv[2]);
    }
    ucp_params_t params = {.field_mask = UCP_PARAM_FIELD_FEATURES, .features = UCP_FEATURE_TAG | UCP_FEATURE_RMA | UCP_FEATURE_AMO64};
    if (ucp_init(&params, config, &context) != UCS_OK) {
        return 3;
    }
    ucp_config_release(config);
    ucp_worker_params_t worker_params = {.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE, .thread_mode = UCS_THREAD_MODE_SINGLE};
    if (ucp_worker_create(context, &worker_params, &worker) != UCS_OK || ucp_worker_get_address(worker, &address, &address_length) != UCS_OK) {
        return 4;
    }
    own_id = sender_id((const uint8_t *)address, address_length);
    printf("{\"address\":\"");
    for (size_t i = 0; i < address_length; i++) {
        printf("%02x", ((const uint8_t *)address)[i]);
    }
    printf("\",\"id\":%u}\n", own_id);
    fflush(stdout);

    while (fgets(line, sizeof(line), stdin) != NULL) {
        char word[16], hex[8192];
        unsigned long long a, b, c, d;
        if (sscanf(line, "peer %8191s", hex) == 1) {
            static uint8_t peer[4096];
            size_t length = from_hex(hex, peer, sizeof(peer));
            peer_id = sender_id(peer, length);
            ucp_ep_params_t ep_params = {.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS, .address = (const ucp_address_t *)peer};
            ucs_status_t status = ucp_ep_create(worker, &ep_params, &ep);
            printf("{\"status\":\"%s\",\"peerId\":%u}\n", ucs_status_string(status), peer_id);
        } else if (sscanf(line, "send %llu %llu %llu", &a, &b, &c) == 3) {
            do_send(a, b, (unsigned)c);
        } else if (sscanf(line, "recv %llu %llu %llu %llu", &a, &b, &c, &d) == 4) {
            do_recv(a, b, (int)c, (unsigned)d);
        } else if (sscanf(line, "probe %llu %llu", &a, &b) == 2) {
            do_probe(a, (unsigned)b);
        } else if (sscanf(line, "fadd %llu %8191s %llu %llu", &a, hex, &b, &c) == 4) {
            do_fadd(a, hex, b, c);
        } else if (sscanf(line, "cswap %llu %8191s %llu %llu", &a, hex, &b, &c) == 4) {
            do_cswap(a, hex, b, c);
        } else if (sscanf(line, "get %llu %8191s", &a, hex) == 2) {
            do_get(a, hex);
        } else if (sscanf(line, "%15s", word) == 1 && strcmp(word, "exit") == 0) {
            break;
        } else {
            printf("{\"status\":\"unknown command\"}\n");
        }
        fflush(stdout);
    }
    if (ep != NULL) {
        ucp_request_param_t close_params = {.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS, .flags = UCP_EP_CLOSE_FLAG_FORCE};
        wait_request(ucp_ep_close_nbx(ep, &close_params));
    }
    ucp_worker_release_address(worker, address);
    ucp_worker_destroy(worker);
    ucp_cleanup(context);
    printf("{\"bye\":true}\n");
    return 0;
}
