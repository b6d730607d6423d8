/* formats/tokenizer: every component on small hand-made tokenizer.json
 * fixtures (tests/fixtures/tokenizer/ and inline ones), with expectations
 * derived by hand (and confirmed against Hugging Face tokenizers 0.23.2), then
 * the real checkpoints against ../shared/reference ids, byte for byte. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/fileio.h"
#include "../formats/tokenizer.h"
#include "../formats/tokenizer_internal.h"
#include "testutil.h"

#define FIX "tests/fixtures/tokenizer/"

static lmc_tokenizer *load_str(const char *json)
{
    lmc_error err;
    lmc_tokenizer *t = NULL;
    if (lmc_tokenizer_from_json(json, strlen(json), "inline.json", &t, &err))
        ck_abort_msg("inline tokenizer: %s", err.msg);
    return t;
}

static char *read_text(const char *path, size_t *len)
{
    lmc_error err;
    char *s = NULL;
    size_t n = 0;
    if (lmc_read_file(path, &s, &n, &err))
        ck_abort_msg("%s", err.msg);
    if (len)
        *len = n;
    return s;
}

static lmc_tokenizer *load_fix(const char *name)
{
    char path[256];
    snprintf(path, sizeof path, FIX "%s", name);
    size_t n;
    char *s = read_text(path, &n);
    lmc_error err;
    lmc_tokenizer *t = NULL;
    if (lmc_tokenizer_from_json(s, n, path, &t, &err))
        ck_abort_msg("%s", err.msg);
    free(s);
    return t;
}

/* Overwrite the first occurrence of from (same length as to). */
static void patch(char *s, const char *from, const char *to)
{
    char *p = strstr(s, from);
    ck_assert_msg(p != NULL && strlen(from) == strlen(to), "patch '%s'", from);
    memcpy(p, to, strlen(to));
}

/* encode and compare with the expected ids (terminated by -1) */
static void check_ids(const lmc_tokenizer *t, const char *text, size_t len, int special, ...)
{
    int32_t want[64];
    size_t nw = 0;
    va_list ap;
    va_start(ap, special);
    for (int v; (v = va_arg(ap, int)) != -1;)
        want[nw++] = v;
    va_end(ap);
    int32_t *ids;
    size_t n;
    lmc_error err;
    ck_assert_msg(lmc_tokenizer_encode(t, text, len, special, &ids, &n, &err) == 0, "%s", err.msg);
    char got[512] = "", exp[512] = "";
    for (size_t i = 0; i < n && strlen(got) < 480; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%d ", ids[i]);
    for (size_t i = 0; i < nw; i++)
        snprintf(exp + strlen(exp), sizeof exp - strlen(exp), "%d ", want[i]);
    ck_assert_msg(n == nw && !memcmp(ids, want, n * sizeof *ids), "'%s': got [%s] want [%s]", text,
                  got, exp);
    free(ids);
}
#define IDS(t, text, special, ...) check_ids(t, text, strlen(text), special, __VA_ARGS__, -1)

static void check_dec(const lmc_tokenizer *t, const int32_t *ids, size_t n, int skip,
                      const char *want)
{
    char *s;
    size_t len;
    lmc_error err;
    ck_assert_msg(lmc_tokenizer_decode(t, ids, n, skip, &s, &len, &err) == 0, "%s", err.msg);
    ck_assert_msg(len == strlen(want) && !memcmp(s, want, len), "decoded '%s' want '%s'", s, want);
    free(s);
}
#define DEC(t, skip, want, ...)                                                                    \
    do {                                                                                           \
        const int32_t ids_[] = {__VA_ARGS__};                                                      \
        check_dec(t, ids_, sizeof ids_ / sizeof ids_[0], skip, want);                              \
    } while (0)

/* The words the model sees, joined by '|'; added tokens as [id]. */
static void check_words(const lmc_tokenizer *t, const char *text, const char *want)
{
    tk_ctx ctx;
    lmc_error err;
    ck_assert_int_eq(tk_ctx_init(&ctx, &err), 0);
    tk_strs w = {0};
    ck_assert_msg(tk_encode_words(t, &ctx, text, strlen(text), &w, &err) == 0, "%s", err.msg);
    tk_buf b = {0};
    for (size_t i = 0; i < w.n; i++) {
        char idb[24];
        if (i)
            tk_buf_putc(&b, '|');
        if (w.v[i].id >= 0) {
            snprintf(idb, sizeof idb, "[%d]", (int)w.v[i].id);
            tk_buf_put(&b, idb, strlen(idb));
        } else {
            tk_buf_put(&b, TK_STR(&w, i), w.v[i].len);
        }
    }
    tk_buf_put(&b, "", 0);
    ck_assert_msg(!strcmp(b.p, want), "'%s': words '%s' want '%s'", text, b.p, want);
    tk_buf_free(&b);
    tk_strs_free(&w);
    tk_ctx_free(&ctx);
}

/* A tokenizer.json around the given components, with a small vocabulary. */
static lmc_tokenizer *mk(const char *norm, const char *pre, const char *added)
{
    char json[8192];
    snprintf(json, sizeof json,
             "{\"version\":\"1.0\",\"added_tokens\":[%s],\"normalizer\":%s,\"pre_tokenizer\":%s,"
             "\"post_processor\":null,\"decoder\":null,\"model\":{\"type\":\"BPE\","
             "\"unk_token\":null,\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"<m>\":3},\"merges\":[\"a b\"]}}",
             added ? added : "", norm ? norm : "null", pre ? pre : "null");
    return load_str(json);
}

static char *load_err(const char *json, size_t len, const char *source)
{
    static lmc_error err;
    lmc_tokenizer *t = NULL;
    ck_assert_int_eq(lmc_tokenizer_from_json(json, len, source, &t, &err), -1);
    ck_assert_ptr_null(t);
    return err.msg;
}

/* ---- model ---- */

START_TEST(bpe_merge_order)
{
    lmc_tokenizer *t = load_fix("bpe_merges.json");
    /* "b c" (rank 0) beats "a b" (rank 1) although it is to the right; then
     * (a, bc) is no merge, so "abc" is never reached */
    IDS(t, "abc", 1, 0, 4);
    IDS(t, "abab", 1, 3, 3);
    IDS(t, "cab", 1, 2, 3);
    IDS(t, "abc cab  xx", 1, 0, 4, 2, 3, 6);
    /* unknown characters: one <unk> per run with fuse_unk */
    IDS(t, "xaxx", 1, 6, 0, 6);
    /* no decoder: tokens joined by spaces; special tokens skipped on request */
    DEC(t, 0, "a bc c ab <unk>", 0, 4, 2, 3, 6);
    DEC(t, 1, "a bc c ab", 0, 4, 2, 3, 6);
    DEC(t, 0, "ab", 3, 99999, -5); /* unknown ids are skipped */
    ck_assert_int_eq(lmc_tokenizer_vocab_size(t), 7);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "bc"), 4);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "<unk>"), 6);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "zz"), -1);
    lmc_tokenizer_free(t);

    /* without fuse_unk every unknown character is its own <unk> */
    size_t n;
    char *s = read_text(FIX "bpe_merges.json", &n);
    patch(s, "\"fuse_unk\": true", "\"fuse_unk\":false");
    lmc_error err;
    ck_assert_int_eq(lmc_tokenizer_from_json(s, n, "nofuse", &t, &err), 0);
    IDS(t, "xaxx", 1, 6, 0, 6, 6);
    lmc_tokenizer_free(t);
    free(s);
}
END_TEST

START_TEST(bpe_byte_fallback)
{
    lmc_tokenizer *t = load_fix("byte_fallback.json");
    /* Prepend "▁" and spaces -> "▁"; "\n" has no token: <0x0A>; "h i" is no merge */
    IDS(t, "hi\nhi", 1, 1, 10, 3, 7, 8);
    IDS(t, "hi\nhi", 0, 10, 3, 7, 8);
    IDS(t, "\xc3\xa9", 1, 1, 6, 4, 5); /* é = C3 A9, both byte tokens exist */
    IDS(t, "\xc3\xbc", 1, 1, 6, 0);    /* ü: <0xBC> missing -> <unk> */
    IDS(t, "\xc3\xbc\xc3\xbc", 1, 1, 6, 0);
    IDS(t, "  hi", 1, 1, 6, 6, 10);
    IDS(t, "", 1, 1);
    check_ids(t, "", 0, 0, -1); /* nothing at all without the special token */
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(bpe_byte_fallback_decode)
{
    lmc_tokenizer *t = load_fix("byte_fallback.json");
    /* the special <s> is matched in the raw text; the pieces around it are
     * normalized on their own */
    IDS(t, "hi <s>hi", 1, 1, 10, 6, 1, 10);
    DEC(t, 0, "<s> hi\nhi", 1, 10, 3, 7, 8);
    DEC(t, 1, "hi\nhi", 1, 10, 3, 7, 8);
    DEC(t, 1, "hi  hi", 1, 10, 6, 1, 10);
    DEC(t, 1, "\xc3\xa9", 1, 6, 4, 5);
    /* an incomplete byte sequence: one U+FFFD per byte */
    DEC(t, 1, "\xef\xbf\xbd", 4);
    DEC(t, 1, "\xef\xbf\xbdhi", 4, 7, 8);
    /* invalid UTF-8 input: each bad byte is a character of its own, here
     * through its byte token */
    check_ids(t, "\xa9", 1, 1, 1, 6, 5, -1);
    check_ids(t, "h\xa9", 2, 1, 1, 9, 5, -1);
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(bpe_prefix_suffix)
{
    lmc_tokenizer *t = load_fix("suffix_prefix.json");
    /* "abc" -> a ##b ##c</w> -> ab ##c</w> -> abc</w>; "ab" -> a ##b</w> -> ab</w>;
     * Lowercase normalizer, Whitespace pre-tokenizer, BertProcessing */
    IDS(t, "ABC ab", 1, 0, 6, 8, 1);
    IDS(t, "ABC ab", 0, 6, 8);
    /* "a</w>", "," and "." are not in the vocab and there is no unk: dropped */
    IDS(t, "a", 1, 0, 1);
    IDS(t, "abc, ab.", 1, 0, 6, 8, 1);
    /* BPEDecoder: the suffix becomes a space, except in the last token */
    DEC(t, 0, "[CLS]abc ab [SEP]", 0, 6, 8, 1);
    DEC(t, 0, "abc ab", 6, 8);
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(bytelevel_model)
{
    lmc_tokenizer *t = load_fix("bytelevel.json");
    /* GPT-2 split: "hi" " hi" "\n" "é"; " hi" -> Ġ h i: "h i" (rank 0) wins
     * over "Ġ h" (rank 1), and (Ġ, hi) is no merge */
    IDS(t, "hi hi\n\xc3\xa9", 1, 7, 3, 7, 4, 10);
    DEC(t, 0, "hi hi\n\xc3\xa9", 7, 3, 7, 4, 10);
    IDS(t, "hi<|endoftext|> hi", 1, 7, 0, 3, 7);
    DEC(t, 1, "hi hi", 7, 0, 3, 7);
    DEC(t, 0, "hi<|endoftext|> hi", 7, 0, 3, 7);
    /* an incomplete UTF-8 sequence decodes lossily */
    DEC(t, 0, "\xef\xbf\xbd", 5);
    check_ids(t, "", 0, 1, -1);
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- pre-tokenizers ---- */

START_TEST(bytelevel_alphabet)
{
    /* GPT-2 bytes_to_unicode: a bijection; printable Latin-1 maps to itself */
    for (int b = 0; b < 256; b++)
        ck_assert_int_eq(tk_cp_to_byte(tk_byte_to_cp((unsigned char)b)), b);
    ck_assert_uint_eq(tk_byte_to_cp(' '), 0x120);  /* Ġ */
    ck_assert_uint_eq(tk_byte_to_cp('\n'), 0x10a); /* Ċ */
    ck_assert_uint_eq(tk_byte_to_cp(0xad), 0x143); /* Ń */
    ck_assert_uint_eq(tk_byte_to_cp('A'), 'A');
    ck_assert_uint_eq(tk_byte_to_cp(0xe9), 0xe9);
    ck_assert_int_eq(tk_cp_to_byte(0x144), -1);
    ck_assert_int_eq(tk_cp_to_byte(0x20), -1);
}
END_TEST

START_TEST(pretok_bytelevel_regex)
{
    lmc_tokenizer *t = load_fix("bytelevel.json");
    /* 's splits off; of two spaces before a word, the first stands alone */
    check_words(t, "Hello world's  12", "Hello|\xc4\xa0world|'s|\xc4\xa0|\xc4\xa0" "12");
    check_words(t, "a\n\nb", "a|\xc4\x8a|\xc4\x8a|b"); /* \s+(?!\S) leaves the last one */
    check_words(t, "x  ", "x|\xc4\xa0\xc4\xa0");
    lmc_tokenizer_free(t);
    t = mk(NULL, "{\"type\":\"ByteLevel\",\"add_prefix_space\":true,\"use_regex\":true}", NULL);
    check_words(t, "hi", "\xc4\xa0hi");
    check_words(t, " hi", "\xc4\xa0hi");
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(pretok_llama3_regex)
{
    lmc_tokenizer *t = load_fix("split_llama3.json");
    check_words(t, "Hello world's 12345 test!!\n\n  ok",
                "Hello| world|'s| |123|45| test|!!\n\n| | ok");
    check_words(t, "I'M DON'T", "I|'M| DON|'T");
    check_words(t, "(caf\xc3\xa9) \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\r\nx",
                "(caf\xc3\xa9|)| \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e|\r\n|x");
    /* emoji and its skin-tone modifier are neither letters nor numbers */
    check_words(t, "hi \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!", "hi| \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd!");
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(pretok_split_behaviors)
{
    static const struct {
        const char *behavior;
        int invert;
        const char *want;
    } cases[] = {
        {"Isolated", 0, "a|1|b|2|2|c"},       {"Removed", 0, "a|b|c"},
        {"MergedWithPrevious", 0, "a1|b2|2|c"}, {"MergedWithNext", 0, "a|1b|2|2c"},
        {"Contiguous", 0, "a|1|b|22|c"},      {"Removed", 1, "1|2|2"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char pre[256];
        snprintf(pre, sizeof pre,
                 "{\"type\":\"Split\",\"pattern\":{\"Regex\":\"[0-9]\"},\"behavior\":\"%s\","
                 "\"invert\":%s}",
                 cases[i].behavior, cases[i].invert ? "true" : "false");
        lmc_tokenizer *t = mk(NULL, pre, NULL);
        check_words(t, "a1b22c", cases[i].want);
        lmc_tokenizer_free(t);
    }
    /* a String pattern is literal */
    lmc_tokenizer *t = mk(NULL,
                          "{\"type\":\"Split\",\"pattern\":{\"String\":\".\"},\"behavior\":"
                          "\"Removed\",\"invert\":false}",
                          NULL);
    check_words(t, "a.b.c", "a|b|c");
    check_words(t, "abc", "abc");
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(pretok_metaspace)
{
    lmc_tokenizer *t = mk(NULL,
                          "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\","
                          "\"prepend_scheme\":\"always\",\"split\":true}",
                          NULL);
    check_words(t, "hello  world", "\xe2\x96\x81hello|\xe2\x96\x81|\xe2\x96\x81world");
    lmc_tokenizer_free(t);
    t = mk(NULL,
           "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"never\","
           "\"split\":false}",
           NULL);
    check_words(t, "hello  world", "hello\xe2\x96\x81\xe2\x96\x81world");
    lmc_tokenizer_free(t);
    /* "first": only the piece at the start of the text gets the prefix */
    t = mk(NULL,
           "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":\"first\","
           "\"split\":true}",
           "{\"id\":9,\"content\":\"<x>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
           "\"normalized\":false,\"special\":true}");
    check_words(t, "a<x>b", "\xe2\x96\x81" "a|[4]|b");
    check_words(t, "<x>b", "[4]|b");
    lmc_tokenizer_free(t);
}
END_TEST

START_TEST(pretok_others)
{
    lmc_tokenizer *t = mk(NULL, "{\"type\":\"Digits\",\"individual_digits\":true}", NULL);
    check_words(t, "ab123c4", "ab|1|2|3|c|4");
    lmc_tokenizer_free(t);
    t = mk(NULL, "{\"type\":\"Digits\",\"individual_digits\":false}", NULL);
    check_words(t, "ab123c4", "ab|123|c|4");
    lmc_tokenizer_free(t);
    t = mk(NULL, "{\"type\":\"Whitespace\"}", NULL);
    check_words(t, "hello, world!! 12_a", "hello|,|world|!!|12_a");
    lmc_tokenizer_free(t);
    t = mk(NULL, "{\"type\":\"WhitespaceSplit\"}", NULL);
    check_words(t, "a  b\tc\n\xe3\x80\x80" "d", "a|b|c|d"); /* U+3000 is whitespace */
    lmc_tokenizer_free(t);
    t = mk(NULL, "{\"type\":\"Punctuation\",\"behavior\":\"Isolated\"}", NULL);
    check_words(t, "a,b!?", "a|,|b|!|?");
    lmc_tokenizer_free(t);
    t = mk(NULL,
           "{\"type\":\"Sequence\",\"pretokenizers\":[{\"type\":\"WhitespaceSplit\"},"
           "{\"type\":\"Digits\",\"individual_digits\":true}]}",
           NULL);
    check_words(t, "a12 b3", "a|1|2|b|3");
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- normalizers ---- */

START_TEST(normalizers)
{
    lmc_tokenizer *t = mk("{\"type\":\"NFC\"}", NULL, NULL);
    check_words(t, "e\xcc\x81", "\xc3\xa9");                         /* e + U+0301 -> é */
    check_words(t, "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8", "\xea\xb0\x81"); /* jamo -> 각 */
    check_words(t, "\xef\xac\x81", "\xef\xac\x81");                 /* ﬁ stays (compatibility) */
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"NFD\"}", NULL, NULL);
    check_words(t, "\xc3\xa9", "e\xcc\x81");
    check_words(t, "\xea\xb0\x81", "\xe1\x84\x80\xe1\x85\xa1\xe1\x86\xa8");
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"NFKC\"}", NULL, NULL);
    check_words(t, "\xef\xac\x81\xe2\x91\xa0", "fi1"); /* ﬁ① */
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"NFKD\"}", NULL, NULL);
    check_words(t, "\xc7\x85", "Dz\xcc\x8c"); /* ǅ -> D z caron */
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"Lowercase\"}", NULL, NULL);
    /* À B İ Σ -> à b i̇ σ (İ lowercases to two characters) */
    check_words(t, "\xc3\x80" "B\xc4\xb0\xce\xa3", "\xc3\xa0" "bi\xcc\x87\xcf\x83");
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"Strip\",\"strip_left\":true,\"strip_right\":true}", NULL, NULL);
    check_words(t, "  a b \t", "a b");
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"Strip\",\"strip_left\":false,\"strip_right\":true}", NULL, NULL);
    check_words(t, "  a b \t", "  a b");
    lmc_tokenizer_free(t);
    t = mk("{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"NFD\"},{\"type\":\"StripAccents\"},"
           "{\"type\":\"Replace\",\"pattern\":{\"Regex\":\"\\\\s+\"},\"content\":\"_\"},"
           "{\"type\":\"Prepend\",\"prepend\":\"^\"}]}",
           NULL, NULL);
    check_words(t, "caf\xc3\xa9  au\tlait", "^cafe_au_lait");
    lmc_tokenizer_free(t);
    /* ByteLevel as a normalizer maps every byte */
    t = mk("{\"type\":\"ByteLevel\"}", NULL, NULL);
    check_words(t, "a \xc3\xa9", "a\xc4\xa0\xc3\x83\xc2\xa9");
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- added tokens ---- */

START_TEST(added_tokens_flags)
{
    const char *added =
        "{\"id\":100,\"content\":\"<m>\",\"single_word\":false,\"lstrip\":true,\"rstrip\":false,"
        "\"normalized\":false,\"special\":true},"
        "{\"id\":101,\"content\":\"[X]\",\"single_word\":false,\"lstrip\":false,\"rstrip\":true,"
        "\"normalized\":false,\"special\":true},"
        "{\"id\":102,\"content\":\"hello\",\"single_word\":true,\"lstrip\":false,\"rstrip\":false,"
        "\"normalized\":false,\"special\":false},"
        "{\"id\":103,\"content\":\"WOR\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
        "\"normalized\":true,\"special\":false}";
    lmc_tokenizer *t = mk("{\"type\":\"Lowercase\"}", NULL, added);
    /* <m> is in the model vocab (id 3); the new ones are numbered from the
     * vocab size (4), whatever their "id" fields say */
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "<m>"), 3);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "[X]"), 4);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "hello"), 5);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "WOR"), 6);
    ck_assert_int_eq(lmc_tokenizer_vocab_size(t), 7);
    check_words(t, "a  <m> b", "a|[3]| b");      /* lstrip takes the spaces before */
    check_words(t, "[X]   b", "[4]|b");          /* rstrip takes the spaces after */
    check_words(t, "hello xhello hello_", "[5]| xhello hello_"); /* single_word */
    check_words(t, "hello!", "[5]|!");
    /* matched before normalization (not normalized) vs after (normalized) */
    check_words(t, "<M>", "<m>");
    check_words(t, "aWORb wor", "a|[6]|b |[6]");
    IDS(t, "ab<m>", 1, 2, 3);
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- decoders ---- */

START_TEST(decoders)
{
    const char *base =
        "{\"version\":\"1.0\",\"added_tokens\":[],\"normalizer\":null,\"pre_tokenizer\":null,"
        "\"post_processor\":null,\"decoder\":%s,\"model\":{\"type\":\"BPE\",\"vocab\":"
        "{\"\xe2\x96\x81hello\":0,\"\xe2\x96\x81world\":1,\"un\":2,\"##able\":3,\".\":4,\"axx\":5,"
        "\"<0xE2>\":6,\"<0x82>\":7,\"<0xAC>\":8,\"xxa\":9},\"merges\":[]}}";
    char json[2048];
    snprintf(json, sizeof json, base,
             "{\"type\":\"Metaspace\",\"replacement\":\"\xe2\x96\x81\",\"prepend_scheme\":"
             "\"always\",\"split\":true}");
    lmc_tokenizer *t = load_str(json);
    DEC(t, 0, "hello world", 0, 1);
    DEC(t, 0, "world hello", 1, 0);
    lmc_tokenizer_free(t);
    snprintf(json, sizeof json, base, "{\"type\":\"WordPiece\",\"prefix\":\"##\",\"cleanup\":true}");
    t = load_str(json);
    DEC(t, 0, "unable.", 2, 3, 4);
    lmc_tokenizer_free(t);
    snprintf(json, sizeof json, base,
             "{\"type\":\"Strip\",\"content\":\"x\",\"start\":1,\"stop\":2}");
    t = load_str(json);
    DEC(t, 0, "axa", 5, 9); /* per token: at most one leading and two trailing x */
    lmc_tokenizer_free(t);
    snprintf(json, sizeof json, base,
             "{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"}]}");
    t = load_str(json);
    DEC(t, 0, "\xe2\x82\xac", 6, 7, 8);                        /* E2 82 AC = € */
    DEC(t, 0, "\xef\xbf\xbd\xef\xbf\xbd" "un", 6, 7, 2);        /* incomplete: two U+FFFD */
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- malformed files ---- */

START_TEST(malformed)
{
    static const struct {
        const char *file, *needle;
    } cases[] = {
        {"bad_json.json", "not valid JSON"},
        {"no_model.json", "model"},
        {"unknown_pretok.json", "pre_tokenizer: unsupported type 'FancySplitter'"},
        {"bad_merge.json", "merge 1 names token 'zz'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, FIX "%s", cases[i].file);
        size_t n;
        char *s = read_text(path, &n);
        const char *msg = load_err(s, n, path);
        ck_assert_msg(strstr(msg, path) && strstr(msg, cases[i].needle), "%s: '%s'", path, msg);
        free(s);
    }
    static const struct {
        const char *json, *needle;
    } inl[] = {
        {"[1,2]", "top level"},
        {"{\"model\":{\"type\":\"Unigram\",\"vocab\":[]}}", "model: unsupported type 'Unigram'"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0},\"merges\":[\"a\"]}}", "merge 0"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
         "produces 'ab'"},
        {"{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", "vocab entry 'a'"},
        {"{\"normalizer\":{\"type\":\"Precompiled\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[]}}",
         "normalizer: unsupported type 'Precompiled'"},
        {"{\"decoder\":{\"type\":\"CTC\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
         "decoder: unsupported type 'CTC'"},
        {"{\"pre_tokenizer\":{\"type\":\"Split\",\"pattern\":{\"Regex\":\"(a\"},\"behavior\":"
         "\"Isolated\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},\"merges\":[]}}",
         "pre_tokenizer Split: pattern"},
        {"{\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":"
         "{\"id\":\"<s>\"}}],\"special_tokens\":{}},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[]}}",
         "special token '<s>'"},
        {"{\"pre_tokenizer\":{\"kind\":\"x\"},\"model\":{\"type\":\"BPE\",\"vocab\":{},"
         "\"merges\":[]}}",
         "pre_tokenizer: missing \"type\""},
    };
    for (size_t i = 0; i < sizeof inl / sizeof inl[0]; i++) {
        const char *msg = load_err(inl[i].json, strlen(inl[i].json), "my.json");
        ck_assert_msg(strstr(msg, "my.json") && strstr(msg, inl[i].needle), "'%s' for %s", msg,
                      inl[i].json);
    }
    load_err("", 0, "empty.json");
    load_err(NULL, 0, "null.json");
    /* an unk_token missing from the vocab fails only when needed */
    lmc_tokenizer *t = load_str("{\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\","
                                "\"vocab\":{\"a\":0},\"merges\":[]}}");
    IDS(t, "aa", 1, 0, 0);
    int32_t *ids;
    size_t n;
    lmc_error err;
    ck_assert_int_eq(lmc_tokenizer_encode(t, "ab", 2, 1, &ids, &n, &err), -1);
    ck_assert(strstr(err.msg, "unk_token") != NULL);
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- the vendored demo model (always available) ---- */

static void encode_file(const lmc_tokenizer *t, const char *path, int32_t **ids, size_t *n,
                        char **text, size_t *len)
{
    lmc_error err;
    *text = read_text(path, len);
    ck_assert_msg(lmc_tokenizer_encode(t, *text, *len, 1, ids, n, &err) == 0, "%s", err.msg);
}

static lmc_tokenizer *load_path(const char *path)
{
    size_t n;
    char *s = read_text(path, &n);
    lmc_error err;
    lmc_tokenizer *t = NULL;
    ck_assert_msg(lmc_tokenizer_from_json(s, n, path, &t, &err) == 0, "%s", err.msg);
    free(s);
    return t;
}

static void check_roundtrip(const lmc_tokenizer *t, const int32_t *ids, size_t n, const char *text,
                            size_t len)
{
    char *back;
    size_t bl;
    lmc_error err;
    ck_assert_msg(lmc_tokenizer_decode(t, ids, n, 1, &back, &bl, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(bl, len);
    ck_assert(!memcmp(back, text, len));
    free(back);
}

START_TEST(vendored_llama_xs_roundtrip)
{
    lmc_tokenizer *t = load_path(lmc_test_data("llama-xs/tokenizer.json"));
    ck_assert_int_eq(lmc_tokenizer_vocab_size(t), 8192);
    ck_assert_int_eq(lmc_tokenizer_token_id(t, "<s>"), 1);
    const char *files[] = {"eval.txt", "calib.txt"};
    for (int f = 0; f < 2; f++) {
        int32_t *ids;
        size_t n, len;
        char *text;
        encode_file(t, lmc_test_data(files[f]), &ids, &n, &text, &len);
        ck_assert_uint_gt(n, len / 8);
        ck_assert_int_eq(ids[0], 1); /* <s> from the TemplateProcessing */
        for (size_t i = 1; i < n; i++)
            ck_assert(ids[i] > 2 && ids[i] < 8192);
        check_roundtrip(t, ids, n, text, len);
        free(ids);
        free(text);
    }
    lmc_tokenizer_free(t);
}
END_TEST

/* ---- the real tokenizers against transformers' ids ---- */

static void check_reference(const char *tok_path, const char *text_path, const char *ref)
{
    lmc_tokenizer *t = load_path(tok_path);
    int32_t *ids;
    size_t n, len, rn;
    char *text;
    encode_file(t, text_path, &ids, &n, &text, &len);
    char *want = read_text(ref, &rn);
    /* int32 little-endian on disk; compare as bytes */
    unsigned char *got = malloc(n * 4 + 1);
    for (size_t i = 0; i < n; i++)
        for (int k = 0; k < 4; k++)
            got[4 * i + k] = (unsigned char)((uint32_t)ids[i] >> (8 * k));
    size_t first = 0;
    while (first < n && first * 4 + 4 <= rn && !memcmp(got + 4 * first, want + 4 * first, 4))
        first++;
    ck_assert_msg(rn == n * 4 && !memcmp(got, want, rn),
                  "%s on %s: %zu ids, reference %zu; first difference at id %zu", tok_path,
                  text_path, n, rn / 4, first);
    free(got);
    free(want);
    free(ids);
    free(text);
    lmc_tokenizer_free(t);
}

START_TEST(reference_eval_ids)
{
    static const char *const models[][2] = {{"llama-s", "llama-s"},
                                            {"llama-xs", "llama-s"}, /* same tokenizer */
                                            {"opt-s", "opt-s"},
                                            {"gpt2-s", "gpt2-s"}};
    for (int i = 0; i < 4; i++) {
        char tok[128], ref[128];
        snprintf(tok, sizeof tok, "models/%s/tokenizer.json", models[i][0]);
        snprintf(ref, sizeof ref, "reference/%s.eval.ids.i32", models[i][1]);
        const char *tp = lmc_test_shared_path(tok);
        if (!tp)
            return;
        char tpb[4096], rpb[4096], epb[4096];
        snprintf(tpb, sizeof tpb, "%s", tp);
        snprintf(rpb, sizeof rpb, "%s", lmc_test_shared_path(ref));
        snprintf(epb, sizeof epb, "%s", lmc_test_shared_path("data/eval.txt"));
        check_reference(tpb, epb, rpb);
    }
}
END_TEST

START_TEST(reference_vendored_copy)
{
    /* the repository's own copies give the reference ids too */
    const char *ref = lmc_test_shared_path("reference/llama-s.eval.ids.i32");
    if (!ref)
        return;
    char rpb[4096];
    snprintf(rpb, sizeof rpb, "%s", ref);
    check_reference(lmc_test_data("llama-xs/tokenizer.json"), lmc_test_data("eval.txt"), rpb);
}
END_TEST

START_TEST(reference_calib_roundtrip)
{
    const char *models[] = {"models/gpt2-s/tokenizer.json", "models/llama-s/tokenizer.json"};
    for (int m = 0; m < 2; m++) {
        const char *tp = lmc_test_shared_path(models[m]);
        if (!tp)
            return;
        lmc_tokenizer *t = load_path(tp);
        int32_t *ids;
        size_t n, len;
        char *text;
        encode_file(t, lmc_test_shared_path("data/calib.txt"), &ids, &n, &text, &len);
        ck_assert_uint_gt(n, 100000);
        check_roundtrip(t, ids, n, text, len);
        free(ids);
        free(text);
        if (m == 0) {
            /* any bytes go through the byte-level alphabet; invalid UTF-8
             * decodes lossily, as the library's decoder does */
            int32_t *bi;
            size_t bn;
            lmc_error err;
            ck_assert_int_eq(lmc_tokenizer_encode(t, "a\xff\xfe" "b", 4, 1, &bi, &bn, &err), 0);
            check_dec(t, bi, bn, 0, "a\xef\xbf\xbd\xef\xbf\xbd" "b");
            free(bi);
        }
        lmc_tokenizer_free(t);
    }
}
END_TEST

int main(void)
{
    Suite *s = suite_create("tokenizer");
    TCase *tc = tcase_create("components");
    tcase_add_test(tc, bpe_merge_order);
    tcase_add_test(tc, bpe_byte_fallback);
    tcase_add_test(tc, bpe_byte_fallback_decode);
    tcase_add_test(tc, bpe_prefix_suffix);
    tcase_add_test(tc, bytelevel_model);
    tcase_add_test(tc, bytelevel_alphabet);
    tcase_add_test(tc, pretok_bytelevel_regex);
    tcase_add_test(tc, pretok_llama3_regex);
    tcase_add_test(tc, pretok_split_behaviors);
    tcase_add_test(tc, pretok_metaspace);
    tcase_add_test(tc, pretok_others);
    tcase_add_test(tc, normalizers);
    tcase_add_test(tc, added_tokens_flags);
    tcase_add_test(tc, decoders);
    tcase_add_test(tc, malformed);
    suite_add_tcase(s, tc);
    TCase *tr = tcase_create("reference");
    tcase_add_test(tr, vendored_llama_xs_roundtrip);
    tcase_add_test(tr, reference_eval_ids);
    tcase_add_test(tr, reference_vendored_copy);
    tcase_add_test(tr, reference_calib_roundtrip);
    suite_add_tcase(s, tr);
    return lmc_test_run(s);
}
