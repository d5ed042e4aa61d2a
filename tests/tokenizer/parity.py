#!/usr/bin/python3
"""parity.py: the Python half of tests/t_tokenizer_parity.sh.

  parity.py corpus OUT_DIR     writes OUT_DIR/corpus.txt, a few MB of mixed
                               text, OUT_DIR/sections.json (name, start and
                               end byte of each part) and OUT_DIR/kjv.txt
                               (the Bible part alone, for timing)
  parity.py compare OUT_DIR C_IDS NODE_IDS
                               compares two id lists (space separated, as
                               tok_ids and encode_chunks.js print them);
                               prints the first difference with context

The corpus is made deterministically (fixed seeds, no network) from the KJV
Bible (the `bible` program of Debian's bible-kjv), C headers from
/usr/include, and generated numbers, whitespace runs, contractions,
non-Latin scripts, emoji and a sweep over Unicode. Standard library only.

What it leaves out, on purpose: U+0085 and U+FEFF, where gpt-3-encoder
(JavaScript's \\s) and GPT-2's own Python (`regex`'s \\s, White_Space)
disagree; gpt2c follows the Python (tests/test_tokenizer.c checks those
cases). The Unicode sweep keeps to code points whose general category is
the same in Unicode 3.2 and in this Python's Unicode, so that differences
between the Unicode versions of PCRE2 and of node cannot show up.
"""
import json
import os
import random
import subprocess
import sys
import unicodedata

LEFT_OUT = {'\u0085': ' ', '\ufeff': ''}

# ------------------------------------------------------------------ text

SENTENCES = {
    'chinese': [
        '起初，神创造天地。地是空虚混沌，渊面黑暗；神的灵运行在水面上。',
        '神说：“要有光”，就有了光。神看光是好的，就把光暗分开了。',
        '太初有道，道與神同在，道就是神。這道太初與神同在。',
        '中华人民共和国成立于1949年。北京是首都，上海是最大的城市。',
    ],
    'japanese': [
        'はじめに神は天と地とを創造された。地は形なく、むなしく、やみが淵のおもてにあり、',
        '神の霊が水のおもてをおおっていた。コンピューター、プログラミング、トークナイザー。',
        '東京タワーは３３３メートルです。ｶﾀｶﾅもあります。',
    ],
    'korean': [
        '태초에 하나님이 천지를 창조하시니라. 땅이 혼돈하고 공허하며 흑암이 깊음 위에 있고',
        '하나님의 영은 수면 위에 운행하시니라. 서울특별시는 대한민국의 수도이다.',
    ],
    'arabic': [
        'فِي الْبَدْءِ خَلَقَ اللهُ السَّمَاوَاتِ وَالأَرْضَ. وَكَانَتِ الأَرْضُ خَرِبَةً وَخَالِيَةً',
        'في البدء خلق الله السماوات والأرض، وكانت الأرض خربة وخالية؟',
        'العدد ١٢٣٤٥٦٧٨٩٠ والسنة ٢٠٢٤ م.',
    ],
    'hebrew': [
        'בְּרֵאשִׁית בָּרָא אֱלֹהִים אֵת הַשָּׁמַיִם וְאֵת הָאָרֶץ.',
        'בראשית ברא אלהים את השמים ואת הארץ: והארץ היתה תהו ובהו',
    ],
    'hindi': [
        'आदि में परमेश्वर ने आकाश और पृथ्वी की सृष्टि की। और पृथ्वी बेडौल और सुनसान पड़ी थी;',
        'और गहरे जल के ऊपर अन्धियारा था: तथा परमेश्वर का आत्मा जल के ऊपर मण्डलाता था। १२३४५६७८९०',
        'हिन्दी भारत की राजभाषा है। नमस्ते, आप कैसे हैं?',
    ],
    'other_indic': [
        'আদিতে ঈশ্বর আকাশমণ্ডল ও পৃথিবী সৃষ্টি করিলেন।',
        'ஆதியிலே தேவன் வானத்தையும் பூமியையும் சிருஷ்டித்தார்.',
        'ในเริ่มแรกนั้นพระเจ้าทรงเนรมิตสร้างฟ้าและแผ่นดินโลก',
    ],
    'european': [
        'В начале сотворил Бог небо и землю. Земля же была безвидна и пуста, и тьма над бездною.',
        'Ἐν ἀρχῇ ἐποίησεν ὁ θεὸς τὸν οὐρανὸν καὶ τὴν γῆν. Ελληνικά: αβγδε ΑΒΓΔΕ.',
        'Ban đầu Đức Chúa Trời dựng nên trời đất. Vả, đất là vô hình và trống không.',
        'Im Anfang schuf Gott Himmel und Erde. Größe, Straße, Äpfel, Übermaß.',
        'Au commencement, Dieu créa les cieux et la terre. « Où êtes-vous ? » — ça va, très bien.',
        'En el principio creó Dios los cielos y la tierra. ¿Qué pasó? ¡Sí, señor!',
        'Na początku Bóg stworzył niebo i ziemię. Zażółć gęślą jaźń.',
        'Başlangıçta Tanrı göğü ve yeri yarattı. İstanbul, ılık, Iğdır.',
        'Սկզբում Աստված ստեղծեց երկինքը և երկիրը։ დასაწყისში შექმნა ღმერთმა ცა და მიწა.',
        'በመጀመሪያ እግዚአብሔር ሰማይንና ምድርን ፈጠረ። ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ',
    ],
    'symbols': [
        '∀x∈ℝ: x² ≥ 0; ∑ᵢ aᵢ ≈ π·r² → ∞ ≠ ½ ⅓ ¼ № ™ © ® € £ ¥ ₹ ¢ § ¶ † ‡ • … ‰ ′ ″',
        'Ⅰ Ⅱ Ⅻ ⅰ ⅱ ① ② ⑳ ⁰¹²³⁴⁵⁶⁷⁸⁹ ₀₁₂₃ ０１２３ ＡＢＣ ａｂｃ ！？',
        '“curly quotes” ‘single’ – en — em ‐ hyphen ‑ nb-hyphen « » ‹ › „low“',
    ],
}

EMOJI = [
    '😀', '😂', '🥲', '❤️', '👍', '👍🏻', '👍🏽', '👍🏿', '👩\u200d💻', '👨\u200d👩\u200d👧\u200d👦',
    '🏳️\u200d🌈', '🏴\u200d☠️', '🧑🏾\u200d🚀', '👩🏼\u200d❤️\u200d💋\u200d👨🏽', '🇫🇷', '🇯🇵', '🇺🇸',
    '1️⃣', '#️⃣', '©️', '☺️', '✌🏾', '🤷\u200d♀️', '🏴\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f',
    '🐍', '🚀', '🎉', '🔥', '✨', '🤖', '👀', '💯',
]

CONTRACTIONS = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d",
                "'S", "'T", "'RE", "'VE", "'M", "'LL", "'D", "'Re", "'Ll"]

WHITESPACE = [' ', '  ', '   ', '    ', '        ', '\t', '\t\t', '\n', '\n\n',
              '\n\n\n', '\r\n', ' \n', '  \n', '\t\n', ' \t ', '\x0b', '\x0c',
              '\u00a0', '\u1680', '\u2000', '\u2003', '\u2009', '\u200a',
              '\u2028', '\u2029', '\u202f', '\u205f', '\u3000', '\u200b',
              '\u180e', ' \u00a0 ', '\u3000\u3000']

WORDS = ('the of and to in is you that it he was for on are as with his they I '
         'at be this have from or one had by word but not what all were we when '
         'your can said there use an each which she do how their if will up other '
         'about out many then them these so some her would make like him into time '
         'has look two more write go see number no way could people my than first '
         'water been call who oil its now find long down day did get come made may '
         'part GPT Tokenizer HTTP JSON McDonald O\'Brien iPhone e-mail naïve café').split()


def kjv():
    return subprocess.run(['bible', '-f', 'gen1:1-rev22:21'], check=True,
                          capture_output=True).stdout.decode('utf-8')


def c_headers(limit):
    out, total = [], 0
    for name in sorted(os.listdir('/usr/include')):
        path = os.path.join('/usr/include', name)
        if not name.endswith('.h') or not os.path.isfile(path):
            continue
        try:
            text = open(path, 'rb').read().decode('utf-8')
        except UnicodeDecodeError:
            continue
        out.append(text)
        total += len(text)
        if total >= limit:
            break
    return ''.join(out)


def numbers(rng, n):
    forms = [
        lambda: str(rng.randrange(10)),
        lambda: str(rng.randrange(10 ** rng.randint(1, 12))),
        lambda: '-' + str(rng.randrange(10 ** 6)),
        lambda: '%d.%0*d' % (rng.randrange(1000), rng.randint(1, 6), rng.randrange(10 ** 6) % 10 ** 6),
        lambda: '{:,}'.format(rng.randrange(10 ** 10)),
        lambda: '%d-%02d-%02d' % (rng.randint(1900, 2099), rng.randint(1, 12), rng.randint(1, 28)),
        lambda: '%02d:%02d:%02d' % (rng.randrange(24), rng.randrange(60), rng.randrange(60)),
        lambda: '0x%x' % rng.randrange(1 << 32),
        lambda: '%de-%d' % (rng.randint(1, 9), rng.randint(1, 30)),
        lambda: '%d.%d.%d' % (rng.randrange(10), rng.randrange(30), rng.randrange(100)),
        lambda: '+1 (%03d) %03d-%04d' % (rng.randrange(1000), rng.randrange(1000), rng.randrange(10000)),
        lambda: '%d.%d.%d.%d' % tuple(rng.randrange(256) for _ in range(4)),
        lambda: ''.join(rng.choice('0123456789') for _ in range(rng.randint(20, 150))),
        lambda: 'abc%ddef%dg' % (rng.randrange(1000), rng.randrange(10)),
        lambda: '$%d.%02d' % (rng.randrange(10000), rng.randrange(100)),
        lambda: '%d%%' % rng.randrange(101),
        lambda: ''.join(rng.choice('٠١٢٣٤٥٦٧٨٩') for _ in range(rng.randint(1, 6))),
        lambda: ''.join(rng.choice('०१२३४५६७८९') for _ in range(rng.randint(1, 6))),
        lambda: ''.join(rng.choice('０１２３４５６７８９') for _ in range(rng.randint(1, 6))),
        lambda: rng.choice(['½', '²', '³', 'Ⅻ', '①', '¼']) + str(rng.randrange(100)),
    ]
    seps = [' ', ', ', '\n', '; ', ' and ', '\t', '  ', '/', '']
    return ''.join(rng.choice(forms)() + rng.choice(seps) for _ in range(n))


def whitespace(rng, n):
    out = []
    for _ in range(n):
        out.append(rng.choice(WORDS + ['.', ',', '!', '123', '"', '(x)', '中文', 'мир']))
        out.append(rng.choice(WHITESPACE) * rng.choice([1, 1, 1, 2, 3]))
        if rng.random() < 0.05:
            out.append(' ' * rng.randint(10, 200) + rng.choice(['\n', 'x', '']))
    return ''.join(out) + '   \n  '


def contractions(rng, n):
    out = []
    for _ in range(n):
        w = rng.choice(WORDS)
        c = rng.choice(CONTRACTIONS)
        k = rng.random()
        if k < 0.5:
            out.append(w + c)
        elif k < 0.6:
            out.append(w.upper() + c.upper())
        elif k < 0.7:
            out.append(c)                   # at the start of a word
        elif k < 0.8:
            out.append(w + c + c)
        elif k < 0.9:
            out.append(w + "'" + rng.choice(["", "'", "x", "1", " ", "s's"]))
        else:
            out.append(w + '\u2019' + c[1:])  # curly apostrophe: not one
        out.append(rng.choice([' ', ' ', ' ', '. ', ', ', '\n', '  ', '!']))
    return "I'm sure it's fine; you're right, they've said we'll go and he'd know. " + ''.join(out)


def scripts(rng, reps):
    out = []
    for name, sents in sorted(SENTENCES.items()):
        letters = [ch for s in sents for ch in s if not ch.isspace()]
        for s in sents:
            out.append(s + '\n')
        for _ in range(reps):
            words = [''.join(rng.choice(letters) for _ in range(rng.randint(1, 8)))
                     for _ in range(rng.randint(3, 12))]
            out.append(rng.choice([' ', '', '、', '，']).join(words) + rng.choice(['.\n', '。', ' ', '\n', '!? ']))
    return ''.join(out)


def emoji(rng, n):
    out = []
    for _ in range(n):
        k = rng.random()
        e = rng.choice(EMOJI)
        if k < 0.3:
            out.append(e)
        elif k < 0.6:
            out.append(' ' + e)
        elif k < 0.8:
            out.append(rng.choice(WORDS) + e)
        else:
            out.append(e * rng.randint(2, 5))
        out.append(rng.choice(['', ' ', ' ', '\n', '! ']))
    return ''.join(out)


def mixed(rng, n, pools):
    out = []
    for _ in range(n):
        pool = rng.choice(pools)
        start = rng.randrange(max(1, len(pool) - 80))
        out.append(pool[start:start + rng.randint(1, 80)])
        if rng.random() < 0.02:
            out.append('<|endoftext|>')
    return ''.join(out)


def long_runs(rng):
    runs = ['a' * 1000, 'ab' * 300, ' ' * 500 + 'x', '\n' * 300, '9' * 400,
            '!' * 300, '中' * 200, 'é' * 300, 'hello' * 100, '\t \n' * 100,
            '-=' * 200, 'Supercalifragilisticexpialidocious' * 10]
    return ' '.join(runs) + '\n'


def unicode_sweep(rng):
    """Every code point with a stable category (3.2 vs now) in a few
    contexts; the big CJK and Hangul blocks sampled."""
    contexts = ['{c}', ' {c}', 'a{c}', '{c}1', '{c}{c}', ' {c}b', '.{c}', '{c}\n', '1{c}', '{c} ']
    old = unicodedata.ucd_3_2_0
    out = []
    for cp in range(0x30000):
        ch = chr(cp)
        cat = unicodedata.category(ch)
        if cat in ('Cn', 'Cs') or old.category(ch) != cat or ch in LEFT_OUT:
            continue
        if cat == 'Co' and cp % 97:
            continue
        if (0x4E00 <= cp <= 0x9FFF or 0xAC00 <= cp <= 0xD7A3) and cp % 5:
            continue
        if cp >= 0x20000 and cp % 25:
            continue
        out.append(rng.choice(contexts).format(c=ch))
        if len(out) % 40 == 0:
            out.append('\n')
    return ''.join(out)


def build(out_dir):
    rng = random.Random(20240520)
    parts = [
        ('kjv', kjv()),
        ('c_headers', c_headers(400_000)),
        ('numbers', numbers(rng, 20_000)),
        ('whitespace', whitespace(rng, 20_000)),
        ('contractions', contractions(rng, 20_000)),
        ('scripts', scripts(rng, 400)),
        ('emoji', emoji(rng, 5_000)),
        ('long_runs', long_runs(rng)),
        ('unicode_sweep', unicode_sweep(rng)),
    ]
    pools = [text[:200_000] for _, text in parts if _ != 'kjv'] + [parts[0][1][:200_000]]
    parts.append(('mixed', mixed(rng, 20_000, pools)))
    sections, chunks, at = [], [], 0
    for name, text in parts:
        for bad, good in LEFT_OUT.items():
            text = text.replace(bad, good)
        data = text.encode('utf-8')
        sections.append({'name': name, 'start': at, 'end': at + len(data)})
        chunks.append(data)
        at += len(data)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, 'corpus.txt'), 'wb') as f:
        f.write(b''.join(chunks))
    with open(os.path.join(out_dir, 'kjv.txt'), 'wb') as f:  # for timing
        f.write(chunks[0])
    with open(os.path.join(out_dir, 'sections.json'), 'w') as f:
        json.dump(sections, f, indent=1)
    for s in sections:
        print('  %-14s %9d bytes' % (s['name'], s['end'] - s['start']))
    print('  %-14s %9d bytes' % ('total', at))


# --------------------------------------------------------------- compare

def bytes_of_ids():
    """id -> raw bytes, from assets/tokenizer/vocab.json and GPT-2's
    bytes_to_unicode (for showing context)."""
    bs = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    dec = {chr(c): b for b, c in zip(bs, cs)}
    here = os.path.dirname(os.path.abspath(__file__))
    vocab = json.load(open(os.path.join(here, '..', '..', 'assets', 'tokenizer', 'vocab.json')))
    return {i: bytes(dec[ch] for ch in tok) for tok, i in vocab.items()}


def compare(out_dir, c_path, node_path):
    c = open(c_path).read().split()
    js = open(node_path).read().split()
    corpus = open(os.path.join(out_dir, 'corpus.txt'), 'rb').read()
    sections = json.load(open(os.path.join(out_dir, 'sections.json')))
    n = min(len(c), len(js))
    first = next((i for i in range(n) if c[i] != js[i]), None)
    if first is None and len(c) == len(js):
        print('tokenizer parity: %d ids over %d bytes identical (gpt2c vs gpt-3-encoder)'
              % (len(c), len(corpus)))
        return 0
    if first is None:
        first = n
    tokens = bytes_of_ids()
    offset = sum(len(tokens[int(x)]) for x in c[:first])
    where = next((s['name'] for s in sections if s['start'] <= offset < s['end']), '?')
    print('tokenizer parity: MISMATCH at id %d (gpt2c %d ids, gpt-3-encoder %d ids), '
          'corpus byte %d, section %s' % (first, len(c), len(js), offset, where))
    print('  text around it: %r' % corpus[max(0, offset - 60):offset + 60])
    lo, hi = max(0, first - 5), first + 8
    for name, ids in (('gpt2c', c), ('gpt-3-encoder', js)):
        shown = ' '.join('%s%s' % ('>' if i == first else '', ids[i])
                         for i in range(lo, min(hi, len(ids))))
        pieces = [tokens.get(int(ids[i]), b'?') for i in range(lo, min(hi, len(ids)))]
        print('  %-14s %s\n  %-14s %r' % (name, shown, '', pieces))
    return 1


def main(argv):
    if len(argv) == 3 and argv[1] == 'corpus':
        build(argv[2])
        return 0
    if len(argv) == 5 and argv[1] == 'compare':
        return compare(argv[2], argv[3], argv[4])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv))
