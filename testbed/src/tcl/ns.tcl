# magi-testbed's stand-in for ns-2's Simulator object and Emulab's tb_compat.tcl.
#
# Run as `tclsh ns.tcl TOPOLOGY.tcl`: the topology file is evaluated unchanged by the real
# Tcl interpreter; every node, link, LAN and tb-* setting it makes is recorded with the
# line that made it, and the whole is printed on stdout as one JSON object. A failure
# prints {"error": ..., "line": N} instead (N: the topology file's line, 0 if unknown).
#
# Names follow Emulab: the variable a node, link or LAN is first `set` into names it, an
# array element `clientnode(3)` becoming `clientnode-3`; the variable then holds the name,
# so scripts may also write a name literally ("router $clanstr").

namespace eval ::tb {
    variable userfile ""
    variable count 0
    variable order {}
    variable settings {}
    variable routing ""
    variable ran 0
    variable obj
    variable byname
    array set obj {}
    array set byname {}
}

rename set ::tb::_set
interp alias {} ::tb::set {} ::tb::_set
rename source ::tb::_source

# `set` as Emulab's parser has it: naming an object after the variable it is first set into.
proc set {args} {
    if {[llength $args] == 2 && [::tb::is_unnamed [lindex $args 1]]} {
        ::tb::_set value [::tb::name_object [lindex $args 1] [lindex $args 0]]
        return [uplevel 1 [list ::tb::_set [lindex $args 0] $value]]
    }
    return [uplevel 1 [list ::tb::_set {*}$args]]
}

# `source tb_compat.tcl` is this file; anything else is sourced as usual.
proc source {args} {
    if {[file tail [lindex $args end]] eq "tb_compat.tcl"} {
        return
    }
    return [uplevel 1 [list ::tb::_source {*}$args]]
}

proc new {class args} {
    if {$class ne "Simulator"} {
        error "new $class: only `new Simulator` is supported"
    }
    proc ::_tb_sim {method args} {
        ::tb::simulator $method {*}$args
    }
    return ::_tb_sim
}

namespace eval ::tb {
    # The line of the topology file being evaluated (innermost frame in that file), 0 if none.
    proc line {} {
        variable userfile
        for {set level [info frame]} {$level > 0} {incr level -1} {
            set frame [info frame $level]
            if {[dict exists $frame file] && [dict get $frame file] eq $userfile} {
                return [dict get $frame line]
            }
        }
        return 0
    }

    proc make {kind fields} {
        variable count
        variable order
        variable obj
        incr count
        set handle "_tb_${kind}$count"
        set obj($handle) [dict merge [dict create kind $kind name "" line [line]] $fields]
        lappend order $handle
        return $handle
    }

    proc is_unnamed {value} {
        variable obj
        return [expr {[string match _tb_* $value] && [info exists obj($value)]
                      && [dict get $obj($value) name] eq ""}]
    }

    # Names the object after the variable `var` (`a(1,2)` gives `a-1-2`); returns the name.
    proc name_object {handle var} {
        variable obj
        variable byname
        set name [string map {( - ) "" , -} [string trimleft $var :]]
        if {[info exists byname($name)]} {
            set other [dict get $obj($byname($name)) line]
            error "the name `$name` is already taken by the [dict get $obj($byname($name)) kind] made at line $other; give each one its own variable (an array such as ${var}(\$i))"
        }
        dict set obj($handle) name $name
        set byname($name) $handle
        return $name
    }

    # The handle of a node, link or LAN given by name or handle, checking its kind.
    proc lookup {value kind what} {
        variable obj
        variable byname
        if {[info exists byname($value)]} {
            set handle $byname($value)
        } elseif {[info exists obj($value)]} {
            set handle $value
        } else {
            error "$what: `$value` is not a $kind"
        }
        if {[dict get $obj($handle) kind] ne $kind} {
            error "$what: `$value` is a [dict get $obj($handle) kind], not a $kind"
        }
        return $handle
    }

    proc simulator {method args} {
        variable routing
        variable ran
        switch -- $method {
            node {
                return [make node [dict create settings [dict create]]]
            }
            duplex-link {
                if {[llength $args] != 5} {
                    error "duplex-link needs: node1 node2 bandwidth delay queue"
                }
                lassign $args a b bw delay queue
                set a [lookup $a node duplex-link]
                set b [lookup $b node duplex-link]
                return [make link [dict create nodes [list $a $b] bandwidth $bw delay $delay queue $queue]]
            }
            make-lan {
                if {[llength $args] < 3 || [llength $args] > 5} {
                    error "make-lan needs: \"node1 node2 ...\" bandwidth delay ?LL? ?queue?"
                }
                lassign $args members bw delay
                set handles {}
                foreach m $members {
                    lappend handles [lookup $m node make-lan]
                }
                set queue DropTail
                if {[llength $args] == 5} {
                    set queue [string map {Queue/ ""} [lindex $args 4]]
                }
                return [make lan [dict create nodes $handles bandwidth $bw delay $delay queue $queue]]
            }
            rtproto {
                set routing [lindex $args 0]
                return ""
            }
            run {
                set ran 1
                return ""
            }
            default {
                error "Simulator method `$method` is not supported here (supported: node, duplex-link, make-lan, rtproto, run)"
            }
        }
    }

    # tb-set-node-X records X on the node; tb-set-link-loss / tb-set-lan-loss set the loss;
    # every other tb-* command is recorded as it was written.
    proc tb_command {command args} {
        variable obj
        variable settings
        switch -glob -- $command {
            tb-set-node-* - tb-set-hardware {
                if {[llength $args] < 2} {
                    error "$command needs: node value"
                }
                set handle [lookup [lindex $args 0] node $command]
                set key [string map {tb-set-node- "" tb-set- ""} $command]
                dict set obj($handle) settings $key [join [lrange $args 1 end]]
            }
            tb-set-link-loss - tb-set-lan-loss {
                if {[llength $args] != 2} {
                    error "$command needs: link loss"
                }
                set kind [expr {$command eq "tb-set-link-loss" ? "link" : "lan"}]
                set handle [lookup [lindex $args 0] $kind $command]
                dict set obj($handle) loss [lindex $args 1]
            }
        }
        lappend settings [dict create command $command args $args line [line]]
        return ""
    }

    proc json_str {s} {
        set out [string map {\\ \\\\ \" \\\" \n \\n \r \\r \t \\t} $s]
        regsub -all {[\x00-\x1f]} $out {} out
        return "\"$out\""
    }

    proc json_list {items} {
        set parts {}
        foreach i $items {
            lappend parts [json_str $i]
        }
        return "\[[join $parts ,]\]"
    }

    proc json_dict {d} {
        set parts {}
        dict for {k v} $d {
            lappend parts "[json_str $k]:[json_str $v]"
        }
        return "{[join $parts ,]}"
    }

    # Final names: objects never set into a variable are named after their kind and number.
    proc name_of {handle} {
        variable obj
        set name [dict get $obj($handle) name]
        if {$name eq ""} {
            regexp {^_tb_([a-z]+)([0-9]+)$} $handle -> kind n
            set name "$kind$n"
        }
        return $name
    }

    proc emit {} {
        variable order
        variable obj
        variable settings
        variable routing
        variable ran
        set out(node) {}
        set out(link) {}
        set out(lan) {}
        foreach handle $order {
            set o $obj($handle)
            set kind [dict get $o kind]
            set fields [list "\"name\":[json_str [name_of $handle]]" "\"line\":[dict get $o line]"]
            if {$kind eq "node"} {
                lappend fields "\"settings\":[json_dict [dict get $o settings]]"
            } else {
                set members {}
                foreach m [dict get $o nodes] {
                    lappend members [name_of $m]
                }
                lappend fields "\"nodes\":[json_list $members]"
                foreach key {bandwidth delay queue loss} {
                    if {[dict exists $o $key]} {
                        lappend fields "\"$key\":[json_str [dict get $o $key]]"
                    }
                }
            }
            lappend out($kind) "{[join $fields ,]}"
        }
        set recorded {}
        foreach s $settings {
            lappend recorded "{\"command\":[json_str [dict get $s command]],\"args\":[json_list [dict get $s args]],\"line\":[dict get $s line]}"
        }
        puts "{\"nodes\":\[[join $out(node) ,]\],\"links\":\[[join $out(link) ,]\],\"lans\":\[[join $out(lan) ,]\],\"routing\":[json_str $routing],\"ran\":[expr {$ran ? "true" : "false"}],\"settings\":\[[join $recorded ,]\]}"
    }

    # The line named in an error's trace: the innermost frame in the topology file.
    proc error_line {info} {
        variable userfile
        set pattern "\\(file \"[string map {\\ \\\\ \[ \\\[ \] \\\] * \\* ? \\? . \\. ( \\( ) \\) + \\+ ^ \\^ \$ \\\$ | \\| \{ \\\{ \} \\\}} $userfile]\" line (\[0-9\]+)\\)"
        if {[regexp $pattern $info -> line]} {
            return $line
        }
        return 0
    }
}

# Every tb-* command goes through ::tb::tb_command; anything else to Tcl's own `unknown`
# (auto-loading, then "invalid command name").
rename unknown ::tb::_unknown
proc unknown {args} {
    if {[string match tb-* [lindex $args 0]]} {
        return [uplevel 1 [list ::tb::tb_command {*}$args]]
    }
    return [uplevel 1 [list ::tb::_unknown {*}$args]]
}

::tb::_set ::tb::userfile [file normalize [lindex $argv 0]]
if {[catch {::tb::_source $::tb::userfile} message options]} {
    puts "{\"error\":[::tb::json_str $message],\"line\":[::tb::error_line [dict get $options -errorinfo]]}"
} elseif {[catch {::tb::emit} message]} {
    puts "{\"error\":[::tb::json_str $message],\"line\":0}"
}
