/* test/unit/test_bytebuf.c: lib/bytebuf: the byte queue under every stream
 * (client TCP, upstream TCP and DoT) and its 2-byte DNS framing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "lib/bytebuf.h"

static void test_append_consume_keeps_order(void **state)
{
    (void)state;
    struct bytebuf b = { 0 };
    uint8_t chunk[100], out[5000];
    size_t written = 0, read = 0;
    /* Interleave writes and partial reads across many regrowths and compactions. */
    for (int round = 0; round < 200; round++) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = (uint8_t)(written + i);
        assert_int_equal(bytebuf_append(&b, chunk, sizeof chunk), 0);
        written += sizeof chunk;
        size_t take = (size_t)(round % 7) * 20;
        if (take > bytebuf_len(&b))
            take = bytebuf_len(&b);
        memcpy(out, bytebuf_head(&b), take);
        for (size_t i = 0; i < take; i++)
            assert_int_equal(out[i], (uint8_t)(read + i));
        bytebuf_consume(&b, take);
        read += take;
        assert_int_equal(bytebuf_len(&b), written - read);
    }
    bytebuf_consume(&b, bytebuf_len(&b));
    assert_int_equal(bytebuf_len(&b), 0);
    assert_int_equal(b.head, 0); /* empty: rewound, so the next append needs no move */
    bytebuf_free(&b);
    assert_null(b.data);
}

static void test_reserve_commit(void **state)
{
    (void)state;
    struct bytebuf b = { 0 };
    uint8_t *p = bytebuf_reserve(&b, 70000);
    assert_non_null(p);
    assert_true(b.cap >= 70000);
    memset(p, 0xab, 10);
    bytebuf_commit(&b, 10);
    assert_int_equal(bytebuf_len(&b), 10);
    assert_int_equal(bytebuf_head(&b)[9], 0xab);
    bytebuf_free(&b);
}

static void test_frames(void **state)
{
    (void)state;
    struct bytebuf b = { 0 };
    assert_int_equal(bytebuf_frame(&b), -1);          /* nothing */
    const uint8_t one = 0x00;
    bytebuf_append(&b, &one, 1);
    assert_int_equal(bytebuf_frame(&b), -1);          /* half a length */
    const uint8_t rest[] = { 0x03, 'a', 'b' };
    bytebuf_append(&b, rest, sizeof rest);
    assert_int_equal(bytebuf_frame(&b), -1);          /* length 3, two bytes of it */
    const uint8_t c = 'c', next[] = { 0x00, 0x00, 0x00, 0x01 };
    bytebuf_append(&b, &c, 1);
    assert_int_equal(bytebuf_frame(&b), 3);
    assert_memory_equal(bytebuf_head(&b) + 2, "abc", 3);
    bytebuf_append(&b, next, sizeof next);            /* an empty frame, then half of another */
    bytebuf_consume(&b, 5);
    assert_int_equal(bytebuf_frame(&b), 0);
    bytebuf_consume(&b, 2);
    assert_int_equal(bytebuf_frame(&b), -1);
    /* The largest frame a DNS message can have. */
    bytebuf_consume(&b, bytebuf_len(&b));
    uint8_t *p = bytebuf_reserve(&b, 65537);
    p[0] = 0xff, p[1] = 0xff;
    bytebuf_commit(&b, 65536);
    assert_int_equal(bytebuf_frame(&b), -1);
    bytebuf_commit(&b, 1);
    assert_int_equal(bytebuf_frame(&b), 65535);
    bytebuf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_consume_keeps_order),
        cmocka_unit_test(test_reserve_commit),
        cmocka_unit_test(test_frames),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
