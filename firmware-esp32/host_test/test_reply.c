/* post_reply parser. */
#include "th.h"
#include "uc_reply.h"

static int parse(const char *s, uc_reply_t *r)
{
    return uc_reply_parse(s, strlen(s), r);
}

static void t_valid(void)
{
    uc_reply_t r;
    CHECK_EQ(parse("{\"code\":200,\"data\":{},\"id\":\"123456000\",\"message\":\"success\",\"method\":\"thing.event.property.post\",\"version\":\"1.0\"}", &r), UC_OK);
    CHECK_EQ(r.id, 123456000);
    CHECK_EQ(r.code, 200);
    CHECK_EQ(parse(" {\n \"id\" : 4294967295 , \"code\" : -1 } \r\n", &r), UC_OK);
    CHECK_EQ(r.id, 4294967295u);
    CHECK_EQ(r.code, -1);
    CHECK_EQ(parse("{\"id\":\"7\",\"code\":6310,\"data\":{\"a\":[1,2.5e3,{\"b\":[true,false,null,[]]}],\"c\":\"x\\\"\\u00e9\\n\"},\"message\":\"text length exceeded\"}", &r), UC_OK);
    CHECK_EQ(r.id, 7);
    CHECK_EQ(r.code, 6310);
    CHECK_EQ(parse("{\"code\":429,\"id\":\"0\"}", &r), UC_OK);
    CHECK_EQ(r.id, 0);
}

static void t_invalid(void)
{
    uc_reply_t r = {99, 99};
    const char *bad[] = {
        "", "[]", "{}", "{\"id\":\"1\"}", "{\"code\":200}", "{\"id\":\"1\",\"code\":200} x",
        "{\"id\":\"1\",\"code\":200,}", "{\"id\":\"1\",\"id\":\"2\",\"code\":200}", "{\"id\":\"01\",\"code\":200}",
        "{\"id\":\"4294967296\",\"code\":200}", "{\"id\":\"1\",\"code\":200.5}", "{\"id\":\"1\",\"code\":2e2}",
        "{\"id\":\"1\",\"code\":200,\"m\":\"abc}", "{\"id\":\"1\",\"code\":200,\"m\":\"a\x01\"}",
        "{\"id\":\"1\",\"code\":200,\"m\":\"\\x\"}", "{\"id\":\"1\",\"code\":200,\"m\":\"\\u12G4\"}",
        "{\"id\":\"1\",\"code\":99999999999}", "{\"id\":-1,\"code\":200}", "{\"id\":\"\",\"code\":200}",
        "{\"id\":\"1\",\"code\":200,\"d\":[1,]}", "{\"id\":\"1\",\"code\":200,\"d\":tru}", "{\"id\":\"1\",\"code\":200,\"d\":{1:2}}",
        "{\"id\":\"1\",\"code\":200,\"d\":[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]}", "{\"id\":\"1\" \"code\":200}",
        "{\"id\":\"1\",\"code\":-}", "{\"id\":\"1\",\"code\":200,\"d\":01}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int e = parse(bad[i], &r);
        if (e != UC_E_PARSE) {
            th_fail(__FILE__, __LINE__, "accepted bad reply #%zu: %s", i, bad[i]);
        }
    }
    CHECK_EQ(r.id, 99); /* untouched on failure */
    CHECK_EQ(uc_reply_parse(NULL, 0, &r), UC_E_ARG);
    /* embedded NUL: length is what counts */
    CHECK_EQ(uc_reply_parse("{\"id\":\"1\",\"code\":200}\0junk", 27, &r), UC_E_PARSE);
    /* depth limit is inclusive */
    CHECK_EQ(parse("{\"id\":\"1\",\"code\":200,\"d\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}", &r), UC_OK);
}

static void t_throttle_codes(void)
{
    CHECK(uc_reply_is_throttle(429));
    CHECK(uc_reply_is_throttle(6452));
    CHECK(!uc_reply_is_throttle(200));
    CHECK(!uc_reply_is_throttle(460));
    CHECK(!uc_reply_is_throttle(6310));
}

void suite_reply(void);
void suite_reply(void)
{
    th_run("reply/valid", t_valid);
    th_run("reply/invalid", t_invalid);
    th_run("reply/throttle_codes", t_throttle_codes);
}
