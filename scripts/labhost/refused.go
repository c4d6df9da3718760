package main

import "syscall"

var errConnRefused = syscall.ECONNREFUSED
