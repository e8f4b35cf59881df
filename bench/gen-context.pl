#!/usr/bin/perl
# gen-context.pl DIR BYTES FILES: write a build context of about BYTES bytes
# in FILES files under DIR. Even-numbered files are source-like text (gzip -1
# shrinks it about 3.8x), odd ones random bytes from /dev/urandom. File sizes
# follow a log-normal spread (many small files, a few of a few MiB), scaled so
# that each half holds half of BYTES. Files sit in 20 x 10 directories.
# The text, the sizes and the names come from a fixed seed, so two machines
# get the same tree apart from the random bytes.
use strict;
use warnings;

my ($dir, $total, $nfiles) = @ARGV;
die "usage: gen-context.pl DIR BYTES FILES\n" unless defined $nfiles && $nfiles >= 2;
srand(20240601);

# Source-like text: a vocabulary of made-up identifiers in code-shaped lines.
my @syl = qw(ba co de fi gu ha ke li mo nu pa qui ro sa te vo wu xe ya zo
             lay obj buf ctx len idx ptr map set get put add del run err str);
my @words;
for (1 .. 600) {
    my $n = 1 + int(rand(3));
    push @words, join('', map { $syl[int(rand(@syl))] } 1 .. $n);
}
sub w { $words[int(rand(@words))] }
my @types = qw(int size_t char void uint32_t uint64_t bool double);
sub t { $types[int(rand(@types))] }
sub n { int(rand(rand() < 0.8 ? 16 : 100000)) }
my @lines = (
    sub { sprintf "static %s %s_%s(struct %s *%s, %s %s)\n{\n", t(), w(), w(), w(), w(), t(), w() },
    sub { sprintf "    %s %s = %s->%s;\n", t(), w(), w(), w() },
    sub { sprintf "    if (%s_%s(%s, %d) < 0)\n        return -%d;\n", w(), w(), w(), n(), n() },
    sub { sprintf "    for (size_t i = 0; i < %s->%s; i++)\n        %s[i] += %s(%s);\n", w(), w(), w(), w(), w() },
    sub { sprintf "    /* %s %s the %s %s, %s %s. */\n", w(), w(), w(), w(), w(), w() },
    sub { sprintf "    %s->%s = %s(%s, \"%s %s\");\n", w(), w(), w(), w(), w(), w() },
    sub { sprintf "    return %s;\n}\n\n", w() },
    sub { sprintf "#define %s_%s %d\n", uc(w()), uc(w()), n() },
);
# Per-line weights: bodies more often than headers.
my @pick = (0, 1, 1, 1, 2, 2, 3, 4, 4, 5, 5, 6, 7);

# Real code repeats itself nearby (similar calls, the same checks), which is
# what LZ77 finds: reusing one of the last 64 lines 40% of the time puts gzip -1
# at about 3.8x and zstd -1 at about 4.2x on this text.
my $pool = '';
my $pool_size = 48 * 1024 * 1024;
my @recent;
while (length($pool) < $pool_size) {
    my $l = (@recent > 40 && rand() < 0.4) ? $recent[int(rand(@recent))]
          : $lines[$pick[int(rand(@pick))]]->();
    push @recent, $l;
    shift @recent if @recent > 64;
    $pool .= $l;
}

# Log-normal weights (sigma 1), via Box-Muller, scaled per half.
my (@size, @sum);
for my $i (0 .. $nfiles - 1) {
    my $g = sqrt(-2 * log(1 - rand())) * cos(6.283185307179586 * rand());
    $size[$i] = exp($g);
    $sum[$i % 2] += $size[$i];
}
for my $i (0 .. $nfiles - 1) {
    my $s = int($size[$i] * ($total / 2) / $sum[$i % 2]);
    $size[$i] = $s < 1 ? 1 : $s;
}

mkdir $dir or die "mkdir $dir: $!\n";
open(my $rnd, '<:raw', '/dev/urandom') or die "open /dev/urandom: $!\n";
my $written = 0;
for my $i (0 .. $nfiles - 1) {
    my $d = sprintf "%s/d%02d", $dir, $i % 20;
    my $sub = sprintf "%s/s%d", $d, int($i / 20) % 10;
    mkdir $d unless -d $d;
    mkdir $sub unless -d $sub;
    my $text = $i % 2 == 0;
    my $path = sprintf "%s/f%05d.%s", $sub, $i, $text ? 'c' : 'bin';
    my $want = $size[$i];
    my $data;
    if ($text) {
        # A slice of the pool at a random offset, under a header unique to
        # the file; wrap around the pool for the rare file larger than it.
        $data = "/* file $i of the cbuild benchmark context */\n";
        while (length($data) < $want) {
            my $off = int(rand($pool_size));
            $data .= substr($pool, $off, $want - length($data));
        }
        $data = substr($data, 0, $want);
    } else {
        my $got = read($rnd, $data, $want);
        die "read /dev/urandom: $!\n" unless defined $got && $got == $want;
    }
    open(my $fh, '>:raw', $path) or die "open $path: $!\n";
    print $fh $data or die "write $path: $!\n";
    close($fh) or die "close $path: $!\n";
    $written += $want;
    printf STDERR "gen-context: %d/%d files, %d MiB\n", $i + 1, $nfiles, $written >> 20
        if ($i + 1) % 2000 == 0;
}
printf STDERR "gen-context: done, %d files, %d bytes\n", $nfiles, $written;
