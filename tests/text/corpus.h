/* tests/text/corpus.h — deterministic generator of varied texts for the
 * tokenizer cross-check and benchmark (all scripts, emoji with ZWJ, code,
 * whitespace and digit runs, contractions, added-token strings, odd but
 * valid UTF-8). */
#ifndef DSV4_TEST_CORPUS_H
#define DSV4_TEST_CORPUS_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static const char *const corpus_frags[] = {
    "Hello", " world", ", ", "! ", "? ", ".", "don't", " can't", " we've", " I'll", " she'd", " it's", "'S", "'ll",
    "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\n    ", "\u3000", "\u00a0", "\u2003",
    "0", "7", "42", "123", "1234", "1234567890", "3.14159", "1,000,000", "٣٤٥", "①②③", "Ⅻ", "½", "१२३", "๓",
    "你好", "，世界！", "中文测试", "毕老师", "龥", "日本語のテキスト", "カタカナ", "ひらがな。", "ｶﾀｶﾅ",
    "한국어 텍스트", "Καλημέρα κόσμε", "Здравствуй, мир", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "สวัสดีชาวโลก", "ሰላም", "Ελληνικά", "Tiếng Việt có dấu", "e\u0301", "a\u0308\u0304", "ﬁ", "ß", "İı",
    "😀", "👍🏽", "👨‍👩‍👧", "👩🏾‍💻", "🏳️‍🌈", "🇫🇷", "🇯🇵🇺🇸", "❤️", "✌🏻", "🧑‍🤝‍🧑", "🌍",
    "def f(a, b):\n    return a + b  # comment\n", "int main(void) { return 0; }", "x->y", "a==b", "i++",
    "{\"key\": [1, 2, 3]}", "<div class=\"x\">", "</div>", "#include <stdio.h>", "$var", "@user", "#tag",
    "https://example.com/path?q=1&r=2", "C:\\path\\file", "foo_bar_baz", "camelCaseWord", "__init__",
    "...", "!!!", "?!", "---", "***", "~~~", "```", "''", "\"\"", "«»", "—", "…", "•",
    "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>",
    "｜DSML｜", "<｜DSML｜invoke name=\"f\">", "<dsml:", "</dsml:", "<｜latest_reminder｜>", "<｜fim▁hole｜>",
    "<|EOT|>", "<|place_holder_mm_span_0100|>", "<｜image｜>", "<｜/table>｜", "<think", "think>", "<｜Us",
    "\xef\xbf\xbf", "\xef\xbf\xbe", "\xef\xb7\x90", "\xf4\x8f\xbf\xbf", "\xf0\x9f\xbf\xbf", "\xf3\xa0\x80\x81",
    "\xef\xbb\xbf", "\xe2\x80\x8b", "\xe2\x80\xa8", "\xc2\x85", "\x01", "\x7f", "\xc2\x80", "\xf0\x90\x8d\x88",
    "\xf0\xa0\x80\x80", "\xf0\x9d\x90\x80", "ĠÑĤÐ²ÑĬÑĢ",
};

static uint64_t corpus_rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Append the UTF-8 of code point cp. */
static size_t corpus_put_cp(char *o, uint32_t cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* Text number k (deterministic) into out (capacity >= 4096); returns length. */
static size_t corpus_text(uint64_t k, char *out)
{
    uint64_t s = 0x9E3779B97F4A7C15ull ^ (k * 0x100000001B3ull + 1);
    for (int i = 0; i < 4; i++) corpus_rng(&s);
    size_t n = 0;
    if (k % 25 == 24) {
        /* one long pre-token piece (long BPE words, long runs) */
        static const char *const runs[] = {"supercalifragilistic", "ภาษาไทย", "  ", "\u0928\u092e\u0938\u094d",
                                           "ab", "\xf0\x9f\x98\x80", "Zz\u0301", "\t"};
        const char *f = runs[(k / 25) % (sizeof runs / sizeof runs[0])];
        size_t l = strlen(f);
        int reps = 10 + (int)(corpus_rng(&s) % 90);
        for (int i = 0; i < reps && n + l < 4000; i++) { memcpy(out + n, f, l); n += l; }
        return n;
    }
    int parts = 1 + (int)(corpus_rng(&s) % 12);
    for (int p = 0; p < parts; p++) {
        uint64_t r = corpus_rng(&s);
        if (r % 5 == 0) {
            /* a few random code points from a range of interest */
            static const uint32_t lo[] = {0x20, 0xA0, 0x370, 0x400, 0x590, 0x600, 0x900, 0xE00, 0x1100, 0x2000,
                                          0x3000, 0x4E00, 0xAC00, 0xFF00, 0x1F300, 0x20000, 0xE0000, 0x10FF00};
            static const uint32_t span[] = {0x5F, 0x60, 0x90, 0x100, 0x80, 0x100, 0x80, 0x80, 0x100, 0x70,
                                            0x100, 0x51A6, 0x2BA4, 0xF0, 0x300, 0x1000, 0x80, 0xFE};
            int which = (int)((r >> 8) % (sizeof lo / sizeof lo[0]));
            int cnt = 1 + (int)((r >> 16) % 6);
            for (int c = 0; c < cnt && n < 4000; c++) {
                uint32_t cp = lo[which] + (uint32_t)(corpus_rng(&s) % span[which]);
                if (cp >= 0xD800 && cp <= 0xDFFF) cp = 0xFFFD;
                n += corpus_put_cp(out + n, cp);
            }
        } else {
            const char *f = corpus_frags[(r >> 8) % (sizeof corpus_frags / sizeof corpus_frags[0])];
            size_t l = strlen(f);
            if (n + l < 4000) { memcpy(out + n, f, l); n += l; }
        }
    }
    return n;
}

#endif
