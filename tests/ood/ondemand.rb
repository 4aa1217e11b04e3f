# What Open OnDemand's dashboard does with a "basic" batch-connect app, for the tests (the
# dashboard itself is a Rails app that is not installable here). Written from OnDemand's
# documentation of interactive apps and of the basic template's options:
#
#   ruby ondemand.rb stage APP SESSION CONTEXT.json   copy APP/template to SESSION, render its
#       *.erb files with `session` and `context` and drop the .erb; render APP/submit.yml.erb
#       with the form's attributes as names (SESSION/submit.yml); write the job script the
#       basic template wraps around before.sh, script.sh and after.sh (SESSION/job_script.sh)
#   ruby ondemand.rb view APP CONNECTION.yml          APP/view.html.erb rendered with the
#       connection file's values, on stdout
require "erb"
require "fileutils"
require "json"
require "ostruct"
require "pathname"
require "yaml"

# The form's values, each readable as a method (context.gpus in templates, gpus in submit.yml.erb).
class Context < OpenStruct
  def render(text)
    ERB.new(text, trim_mode: "-").result(binding)
  end
end

Session = Struct.new(:id, :staged_root)

# The basic template's job script: helpers, host, before.sh, script.sh forked, after.sh, the
# connection file, then wait for script.sh (connection parameters: host, port, password).
def job_script(work_dir)
  <<~SCRIPT
    #!/bin/bash
    cd "#{work_dir}"
    export host port
    create_yml () {
      echo "Generating connection YAML file..."
      ( umask 077; printf 'host: %s\\nport: %s\\npassword: %s\\n' "$host" "$port" "$password" > connection.yml )
    }
    clean_up () {
      echo "Cleaning up..."
      [[ -e clean.sh ]] && source clean.sh
      [[ ${SCRIPT_PID} ]] && pkill -P ${SCRIPT_PID} || :
      pkill -P $$
      exit ${1:-0}
    }
    port_used () { (: < "/dev/tcp/${1%%:*}/${1##*:}") 2> /dev/null; }
    find_port () {
      local host="${1:-localhost}" port
      port=$(shuf -i 2000-65535 -n 1)
      while port_used "${host}:${port}"; do port=$(shuf -i 2000-65535 -n 1); done
      echo "${port}"
    }
    create_passwd () { tr -cd '[:alnum:]' < /dev/urandom 2> /dev/null | head -c${1:-8}; }
    host=$(hostname)
    [[ -e "before.sh" ]] && source "before.sh"
    echo "Script starting..."
    "./script.sh" &
    SCRIPT_PID=$!
    [[ -e "after.sh" ]] && source "after.sh"
    create_yml
    wait ${SCRIPT_PID} || clean_up 1
    clean_up
  SCRIPT
end

def stage(app, session_dir, context_file)
  context = Context.new(JSON.parse(File.read(context_file)))
  session = Session.new(File.basename(session_dir), Pathname.new(session_dir))
  FileUtils.mkdir_p(session_dir)
  FileUtils.cp_r(Dir.glob(File.join(app, "template", "*")), session_dir, preserve: true)
  Dir.glob(File.join(session_dir, "**", "*.erb")).each do |path|
    rendered = ERB.new(File.read(path), trim_mode: "-").result_with_hash(session: session, context: context)
    target = path.delete_suffix(".erb")
    File.write(target, rendered)
    File.chmod(File.stat(path).mode, target)
    File.delete(path)
  end
  File.write(File.join(session_dir, "submit.yml"), context.render(File.read(File.join(app, "submit.yml.erb"))))
  File.write(File.join(session_dir, "job_script.sh"), job_script(session_dir))
end

def view(app, connection_file)
  connection = YAML.safe_load(File.read(connection_file))
  puts ERB.new(File.read(File.join(app, "view.html.erb")), trim_mode: "-").result_with_hash(
    host: connection["host"].to_s, port: connection["port"].to_s, password: connection["password"].to_s
  )
end

case ARGV[0]
when "stage" then stage(ARGV[1], ARGV[2], ARGV[3])
when "view" then view(ARGV[1], ARGV[2])
else abort "usage: ruby ondemand.rb stage APP SESSION CONTEXT.json | view APP CONNECTION.yml"
end
