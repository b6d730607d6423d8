/* formats/hf_config: config.json of every supported family, transformers
 * 4.x and 5.x keys, defaults for omitted keys, and clear refusals. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../formats/hf_config.h"
#include "testutil.h"

static const char *fixture(const char *name)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "tests/fixtures/configs/%s", name);
    return buf;
}

static void load_ok(const char *path, lmc_config *c)
{
    lmc_error err;
    ck_assert_msg(lmc_hf_config_load(path, c, NULL, &err) == 0, "%s", err.msg);
}

static void parse_fail(const char *json, const char *what)
{
    lmc_config c;
    lmc_error err = {{0}};
    ck_assert_msg(lmc_hf_config_parse(json, strlen(json), "x/config.json", &c, &err) == -1,
                  "accepted: %s", json);
    ck_assert_msg(strstr(err.msg, "x/config.json") != NULL, "no file in: %s", err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

START_TEST(llama_xs_repo_copy)
{
    lmc_config c;
    char *text = NULL;
    lmc_error err;
    ck_assert_msg(lmc_hf_config_load(lmc_test_data("llama-xs/config.json"), &c, &text, &err) == 0,
                  "%s", err.msg);
    ck_assert_ptr_nonnull(text);
    ck_assert(strstr(text, "\"rope_parameters\"") != NULL); /* the 5.x layout */
    free(text);
    ck_assert_int_eq(c.arch, LMC_ARCH_LLAMA);
    ck_assert_str_eq(c.model_type, "llama");
    ck_assert_int_eq(c.vocab, 8192);
    ck_assert_int_eq(c.hidden, 128);
    ck_assert_int_eq(c.n_layers, 4);
    ck_assert_int_eq(c.n_heads, 4);
    ck_assert_int_eq(c.n_kv_heads, 2);
    ck_assert_int_eq(c.head_dim, 32);
    ck_assert_int_eq(c.ffn, 352);
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_int_eq(c.tied, 1);
    ck_assert_int_eq(c.norm_is_rms, 1);
    ck_assert(c.norm_eps == 1e-5);
    ck_assert_int_eq(c.act, LMC_ACT_SILU);
    ck_assert_int_eq(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
    ck_assert_int_eq(c.rope_type, LMC_ROPE_DEFAULT);
    ck_assert(c.rope_theta == 10000.0);
    ck_assert(c.rope_factor == 1.0);
    ck_assert_int_eq(c.bos_id, 1);
    ck_assert_int_eq(c.eos_id, 2);
    ck_assert_int_eq(c.pos_offset, 0);
    ck_assert_str_eq(c.src_dtype, "float16");
}
END_TEST

START_TEST(shared_models)
{
    const char *p = lmc_test_shared_path("models/llama-s/config.json");
    if (!p)
        return;
    lmc_config c;
    load_ok(p, &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_LLAMA);
    ck_assert_int_eq(c.hidden, 256);
    ck_assert_int_eq(c.n_layers, 8);
    ck_assert_int_eq(c.n_heads, 8);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 32);
    ck_assert_int_eq(c.ffn, 688);
    ck_assert_int_eq(c.tied, 0);

    load_ok(lmc_test_shared_path("models/llama-xs/config.json"), &c);
    ck_assert_int_eq(c.hidden, 128);
    ck_assert_int_eq(c.tied, 1);

    load_ok(lmc_test_shared_path("models/opt-s/config.json"), &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_OPT);
    ck_assert_str_eq(c.model_type, "opt");
    ck_assert_int_eq(c.vocab, 8192);
    ck_assert_int_eq(c.hidden, 256);
    ck_assert_int_eq(c.n_layers, 6);
    ck_assert_int_eq(c.n_heads, 4);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.ffn, 1024);
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_int_eq(c.pos_offset, 2);
    ck_assert_int_eq(c.tied, 1);
    ck_assert_int_eq(c.norm_is_rms, 0);
    ck_assert(c.norm_eps == 1e-5);
    ck_assert_int_eq(c.act, LMC_ACT_RELU);
    ck_assert_int_eq(c.qkv_bias, 1);
    ck_assert_int_eq(c.o_bias, 1);
    ck_assert_int_eq(c.mlp_bias, 1);
    ck_assert_int_eq(c.rope_type, LMC_ROPE_NONE);
    ck_assert_int_eq(c.bos_id, 0);
    ck_assert_int_eq(c.eos_id, 0);

    load_ok(lmc_test_shared_path("models/gpt2-s/config.json"), &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_GPT2);
    ck_assert_int_eq(c.vocab, 8192);
    ck_assert_int_eq(c.hidden, 256);
    ck_assert_int_eq(c.n_layers, 6);
    ck_assert_int_eq(c.n_heads, 4);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.ffn, 1024); /* n_inner null -> 4 * n_embd */
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_int_eq(c.pos_offset, 0);
    ck_assert_int_eq(c.tied, 1);
    ck_assert_int_eq(c.act, LMC_ACT_GELU_NEW);
    ck_assert(c.norm_eps == 1e-5);
    ck_assert_int_eq(c.qkv_bias + c.o_bias + c.mlp_bias, 3);
    ck_assert_str_eq(c.src_dtype, "float16");
}
END_TEST

START_TEST(llama3_4x_keys)
{
    lmc_config c;
    load_ok(fixture("llama3-4x.json"), &c);
    ck_assert_int_eq(c.n_heads, 32);
    ck_assert_int_eq(c.n_kv_heads, 32); /* no num_key_value_heads: MHA */
    ck_assert_int_eq(c.head_dim, 64);   /* no head_dim: hidden / heads */
    ck_assert(c.rope_theta == 500000.0); /* top-level rope_theta */
    ck_assert_int_eq(c.rope_type, LMC_ROPE_LLAMA3);
    ck_assert(c.rope_factor == 32.0);
    ck_assert(c.rope_low_freq_factor == 1.0);
    ck_assert(c.rope_high_freq_factor == 4.0);
    ck_assert_int_eq(c.rope_orig_max_pos, 8192);
    ck_assert_int_eq(c.max_pos, 131072);
    ck_assert_str_eq(c.src_dtype, "bfloat16"); /* torch_dtype */
    ck_assert_int_eq(c.bos_id, 128000);
    ck_assert_int_eq(c.eos_id, 128001); /* a list: the first id */
    ck_assert_int_eq(c.tied, 1);
}
END_TEST

START_TEST(llama2_linear_biases)
{
    lmc_config c;
    load_ok(fixture("llama2-linear-4x.json"), &c);
    ck_assert_int_eq(c.rope_type, LMC_ROPE_LINEAR); /* "type" key of 4.x */
    ck_assert(c.rope_factor == 2.0);
    ck_assert(c.rope_theta == 10000.0); /* absent: default */
    ck_assert_int_eq(c.tied, 0);        /* absent: LlamaConfig default False */
    ck_assert_int_eq(c.qkv_bias, 1);    /* attention_bias: q, k, v and o */
    ck_assert_int_eq(c.o_bias, 1);
    ck_assert_int_eq(c.mlp_bias, 1);
    ck_assert_int_eq(c.n_kv_heads, 4);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert(c.norm_eps == 1e-6);
    ck_assert_str_eq(c.src_dtype, "float16");

    load_ok(fixture("llama-5x-linear.json"), &c);
    ck_assert_int_eq(c.rope_type, LMC_ROPE_LINEAR); /* rope_parameters */
    ck_assert(c.rope_factor == 4.0);
    ck_assert(c.rope_theta == 50000.0);
    ck_assert_int_eq(c.head_dim, 64); /* explicit, != hidden / heads */
    ck_assert_int_eq(c.n_kv_heads, 8); /* null */
    ck_assert_int_eq(c.bos_id, -1);    /* null */
    ck_assert_int_eq(c.eos_id, -1);    /* absent */
    ck_assert_str_eq(c.src_dtype, "float32");
}
END_TEST

START_TEST(qwen2_mistral)
{
    lmc_config c;
    load_ok(fixture("qwen2.json"), &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_LLAMA);
    ck_assert_str_eq(c.model_type, "qwen2");
    ck_assert_int_eq(c.qkv_bias, 1);
    ck_assert_int_eq(c.o_bias, 0);
    ck_assert_int_eq(c.mlp_bias, 0);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.n_kv_heads, 2);
    ck_assert_int_eq(c.max_pos, 32768); /* use_sliding_window false */
    ck_assert(c.rope_theta == 1e6);
    ck_assert_int_eq(c.tied, 1);

    load_ok(fixture("mistral.json"), &c);
    ck_assert_str_eq(c.model_type, "mistral");
    ck_assert_int_eq(c.qkv_bias + c.o_bias + c.mlp_bias, 0);
    ck_assert_int_eq(c.max_pos, 4096); /* sliding_window below max positions */
    ck_assert_int_eq(c.n_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.tied, 0);
}
END_TEST

START_TEST(gpt2_opt_4x)
{
    lmc_config c;
    load_ok(fixture("gpt2-4x.json"), &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_GPT2);
    ck_assert_int_eq(c.tied, 1); /* absent: GPT-2 ties */
    ck_assert_int_eq(c.ffn, 3072);
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_int_eq(c.bos_id, 50256);
    ck_assert_str_eq(c.src_dtype, ""); /* no dtype key */

    load_ok(fixture("opt-125m-4x.json"), &c);
    ck_assert_int_eq(c.arch, LMC_ARCH_OPT);
    ck_assert_int_eq(c.tied, 1);
    ck_assert_int_eq(c.ffn, 3072);
    ck_assert_int_eq(c.max_pos, 2048);
    ck_assert_int_eq(c.pos_offset, 2);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_str_eq(c.src_dtype, "float16");
}
END_TEST

static void load_fail(const char *file, const char *what)
{
    lmc_config c;
    lmc_error err = {{0}};
    const char *p = fixture(file);
    ck_assert_msg(lmc_hf_config_load(p, &c, NULL, &err) == -1, "%s accepted", file);
    ck_assert_msg(strstr(err.msg, p) != NULL, "no file in: %s", err.msg);
    ck_assert_msg(strstr(err.msg, what) != NULL, "expected '%s' in: %s", what, err.msg);
}

START_TEST(refusals)
{
    load_fail("gemma.json", "model_type 'gemma' is not supported (supported: llama, mistral, "
                            "qwen2, opt, gpt2)");
    load_fail("opt-350m-4x.json", "do_layer_norm_before=false");
    load_fail("llama-yarn.json", "rope type 'yarn' is not supported");
    load_fail("does-not-exist.json", "cannot open");

    const char *base = "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100,"
                       "\"intermediate_size\":64";
    char j[1024];
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",%s}", base);
    parse_fail(j, "missing required key 'hidden_size'");
    parse_fail("{\"hidden_size\": 8}", "missing required key 'model_type'");
    parse_fail("{\"model_type\": 5}", "'model_type' must be a string");
    parse_fail("{\"model_type\": \"llama\", ", "not valid JSON");
    parse_fail("[]", "not a JSON object");
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",\"hidden_size\":30,%s}", base);
    parse_fail(j, "not a multiple of num_attention_heads");
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",\"hidden_size\":32,\"num_key_value_heads\":3,%s}",
             base);
    parse_fail(j, "not a multiple of num_key_value_heads");
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",\"hidden_size\":-32,%s}", base);
    parse_fail(j, "'hidden_size' must be an integer");
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",\"hidden_size\":32.5,%s}", base);
    parse_fail(j, "'hidden_size' must be an integer");
    snprintf(j, sizeof j, "{\"model_type\":\"llama\",\"hidden_size\":32,\"hidden_act\":\"tanh\",%s}",
             base);
    parse_fail(j, "hidden_act 'tanh' is not supported");
    snprintf(j, sizeof j,
             "{\"model_type\":\"llama\",\"hidden_size\":32,\"rope_scaling\":{\"rope_type\":"
             "\"llama3\",\"factor\":8},%s}",
             base);
    parse_fail(j, "rope scaling 'llama3' needs 'low_freq_factor'");
    snprintf(j, sizeof j,
             "{\"model_type\":\"llama\",\"hidden_size\":32,\"rope_scaling\":{\"type\":\"linear\"},"
             "%s}",
             base);
    parse_fail(j, "rope scaling 'linear' needs 'factor'");
    snprintf(j, sizeof j,
             "{\"model_type\":\"llama\",\"hidden_size\":32,\"tie_word_embeddings\":\"yes\",%s}",
             base);
    parse_fail(j, "'tie_word_embeddings' must be true or false");
    snprintf(j, sizeof j,
             "{\"model_type\":\"llama\",\"hidden_size\":32,\"rope_parameters\":{\"full_attention\":"
             "{\"rope_theta\":1e4}},%s}",
             base);
    parse_fail(j, "per-layer-type rope_parameters");
    parse_fail("{\"model_type\":\"opt\",\"hidden_size\":64,\"ffn_dim\":128,\"num_hidden_layers\":1,"
               "\"num_attention_heads\":4,\"vocab_size\":50,\"word_embed_proj_dim\":32}",
               "word_embed_proj_dim 32 != hidden_size 64");
    parse_fail("{\"model_type\":\"opt\",\"hidden_size\":64,\"num_hidden_layers\":1,"
               "\"num_attention_heads\":4,\"vocab_size\":50}",
               "missing required key 'ffn_dim'");
    parse_fail("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":50,"
               "\"scale_attn_by_inverse_layer_idx\":true}",
               "scale_attn_by_inverse_layer_idx");
    parse_fail("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":50,"
               "\"activation_function\":\"swiglu\"}",
               "activation_function 'swiglu' is not supported");
    parse_fail("{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,\"vocab_size\":50,"
               "\"eos_token_id\":\"x\"}",
               "'eos_token_id' must be a token id");
}
END_TEST

START_TEST(defaults_when_omitted)
{
    /* save_pretrained leaves out keys equal to the defaults: class defaults apply */
    const char *j = "{\"model_type\":\"mistral\",\"hidden_size\":64,\"intermediate_size\":128,"
                    "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":50}";
    lmc_config c;
    lmc_error err;
    ck_assert_msg(lmc_hf_config_parse(j, strlen(j), "m/config.json", &c, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(c.max_pos, 131072);
    ck_assert(c.norm_eps == 1e-6);
    ck_assert_int_eq(c.act, LMC_ACT_SILU);
    ck_assert_int_eq(c.tied, 0);
    ck_assert_int_eq(c.rope_type, LMC_ROPE_DEFAULT);
    ck_assert_int_eq(c.bos_id, -1);
    const char *g = "{\"model_type\":\"gpt2\",\"n_embd\":64,\"n_layer\":1,\"n_head\":4,"
                    "\"vocab_size\":50,\"activation_function\":\"gelu\"}";
    ck_assert_msg(lmc_hf_config_parse(g, strlen(g), "g/config.json", &c, &err) == 0, "%s",
                  err.msg);
    ck_assert_int_eq(c.act, LMC_ACT_GELU);
    ck_assert_int_eq(c.max_pos, 1024);
    ck_assert_int_eq(c.ffn, 256);
    ck_assert_int_eq(c.tied, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("hf_config");
    TCase *tc = tcase_create("hf_config");
    tcase_add_test(tc, llama_xs_repo_copy);
    tcase_add_test(tc, shared_models);
    tcase_add_test(tc, llama3_4x_keys);
    tcase_add_test(tc, llama2_linear_biases);
    tcase_add_test(tc, qwen2_mistral);
    tcase_add_test(tc, gpt2_opt_4x);
    tcase_add_test(tc, refusals);
    tcase_add_test(tc, defaults_when_omitted);
    suite_add_tcase(s, tc);
    return lmc_test_run(s);
}
