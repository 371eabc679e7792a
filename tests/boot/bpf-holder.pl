#!/usr/bin/perl
# Hold one pinned eBPF object open until killed, as a live eBPF dataplane (Felix) does. The guard's
# interlock must see this process through /proc/<pid>/fdinfo and refuse to sweep. Perl because
# perl-base is in every Debian minbase rootfs and its syscall() reaches bpf(2) directly.
use strict;
use warnings;
use POSIX ();

my $pin = shift or die "usage: $0 PIN\n";
my %sys_bpf = (x86_64 => 321, aarch64 => 280);
my $machine = (POSIX::uname())[4];
my $nr = $sys_bpf{$machine} or die "bpf(2) syscall number unknown for $machine\n";
my $BPF_OBJ_GET = 7;
# union bpf_attr for BPF_OBJ_GET: __u64 pathname, __u32 bpf_fd, __u32 file_flags, __s32 path_fd.
my $attr = pack('Q L L l L', unpack('Q', pack('p', $pin)), 0, 0, 0, 0);
my $fd = syscall($nr, $BPF_OBJ_GET, $attr, length $attr);
die "BPF_OBJ_GET $pin: $!\n" if $fd < 0;
print "pid $$ holds fd $fd for $pin\n";
sleep;
