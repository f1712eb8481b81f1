#!/bin/bash
# devstack plugin for Strongroom (data protection, Karbor v1 API).
#
# Called by stack.sh, unstack.sh and clean.sh as "plugin.sh <mode> [<phase>]" after devstack/settings:
#   stack install      install the package (and gunicorn)
#   stack post-config  write strongroom.conf, install providers.d, create the keystone user and the
#                      data-protect endpoint, (re)create the database and run "strongroom-manage db sync"
#   stack extra        start strongroom-protection, strongroom-operationengine and strongroom-api
#   unstack            stop them
#   clean              remove configuration, state and caches

# Save trace setting
_XTRACE_STRONGROOM=$(set +o | grep xtrace)
set +o xtrace

STRONGROOM_SERVICES="strongroom-api strongroom-protection strongroom-operationengine"

# install_strongroom - the package, its database driver and the WSGI server
function install_strongroom {
    setup_develop $STRONGROOM_DIR
    if is_service_enabled postgresql; then
        pip_install "psycopg2-binary>=2.9"
    fi
    if is_service_enabled mysql; then
        pip_install "PyMySQL>=1.1"
    fi
    if [[ "$STRONGROOM_API_SERVER" == "gunicorn" ]]; then
        pip_install "gunicorn>=21.2"
    fi
}

# configure_strongroom - strongroom.conf and providers.d
function configure_strongroom {
    sudo install -d -o $STACK_USER $STRONGROOM_CONF_DIR $STRONGROOM_PROVIDERS_DIR
    install -d $STRONGROOM_STATE_DIR $STRONGROOM_STATE_DIR/volumes
    rm -f $STRONGROOM_CONF

    iniset $STRONGROOM_CONF DEFAULT debug $ENABLE_DEBUG_LOG_LEVEL
    iniset $STRONGROOM_CONF DEFAULT state_dir $STRONGROOM_STATE_DIR
    iniset $STRONGROOM_CONF DEFAULT providers_dir $STRONGROOM_PROVIDERS_DIR
    iniset $STRONGROOM_CONF DEFAULT heartbeat_interval $STRONGROOM_HEARTBEAT_INTERVAL
    iniset $STRONGROOM_CONF DEFAULT missed_heartbeats $STRONGROOM_MISSED_HEARTBEATS
    iniset $STRONGROOM_CONF api bind_host $STRONGROOM_API_LISTEN_ADDRESS
    iniset $STRONGROOM_CONF api bind_port $STRONGROOM_API_PORT
    # devstack's MySQL URLs ask for the 3-byte "utf8": names may hold any Unicode character.
    iniset $STRONGROOM_CONF database connection $(database_connection_url strongroom | sed 's/charset=utf8$/charset=utf8mb4/')
    # [DEFAULT] transport_url for RabbitMQ
    iniset_rpc_backend strongroom $STRONGROOM_CONF DEFAULT

    if is_service_enabled keystone; then
        iniset $STRONGROOM_CONF DEFAULT auth_strategy keystone
        sudo install -d -o $STACK_USER $STRONGROOM_AUTH_CACHE_DIR
        configure_keystone_authtoken_middleware $STRONGROOM_CONF $STRONGROOM_SERVICE_NAME
        # Scheduled runs act through Keystone trusts to the service user (doc/scheduling.md).
        iniset $STRONGROOM_CONF trustee auth_url $KEYSTONE_SERVICE_URI/v3
        iniset $STRONGROOM_CONF trustee username $STRONGROOM_SERVICE_NAME
        iniset $STRONGROOM_CONF trustee password $SERVICE_PASSWORD
        iniset $STRONGROOM_CONF trustee user_domain_id default
    else
        iniset $STRONGROOM_CONF DEFAULT auth_strategy noauth
    fi

    # The providers shipped in the repository ({state_dir} in them is replaced at start-up).
    cp $STRONGROOM_DIR/providers.d/*.conf $STRONGROOM_PROVIDERS_DIR/
}

# create_strongroom_accounts - the service user and the data-protect endpoint
function create_strongroom_accounts {
    if ! is_service_enabled keystone; then
        return
    fi
    create_service_user $STRONGROOM_SERVICE_NAME "admin"
    get_or_create_service $STRONGROOM_SERVICE_NAME $STRONGROOM_SERVICE_TYPE "Data Protection Service"
    get_or_create_endpoint $STRONGROOM_SERVICE_TYPE "$REGION_NAME" "$STRONGROOM_API_ENDPOINT"
}

# init_strongroom - a fresh database at the newest schema
function init_strongroom {
    if is_service_enabled $DATABASE_BACKENDS; then
        recreate_database strongroom
        if [[ "$DATABASE_TYPE" == "mysql" ]]; then
            mysql -u$DATABASE_USER -p$DATABASE_PASSWORD -h$MYSQL_HOST \
                -e "ALTER DATABASE strongroom CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;"
        fi
    fi
    $STRONGROOM_BIN_DIR/strongroom-manage --config-file $STRONGROOM_CONF db sync
}

# start_strongroom - the workers first (the API hands them work), then the API
function start_strongroom {
    local conf="--config-file $STRONGROOM_CONF"
    run_process strongroom-protection "$STRONGROOM_BIN_DIR/strongroom-protection $conf"
    if is_service_enabled strongroom-operationengine; then
        if [[ -x $STRONGROOM_BIN_DIR/strongroom-operationengine ]]; then
            run_process strongroom-operationengine "$STRONGROOM_BIN_DIR/strongroom-operationengine $conf"
        else
            echo "WARNING: strongroom-operationengine is not installed by this version; not started"
        fi
    fi
    if [[ "$STRONGROOM_API_SERVER" == "gunicorn" ]]; then
        run_process strongroom-api "$STRONGROOM_BIN_DIR/gunicorn --workers $STRONGROOM_API_WORKERS \
--threads $STRONGROOM_API_THREADS --bind $STRONGROOM_API_LISTEN_ADDRESS:$STRONGROOM_API_PORT \
strongroom.api.wsgi:application" "" "" "STRONGROOM_CONFIG_FILE=$STRONGROOM_CONF"
    else
        run_process strongroom-api "$STRONGROOM_BIN_DIR/strongroom-api $conf"
    fi
    if ! wait_for_service $SERVICE_TIMEOUT $STRONGROOM_API_URL; then
        die $LINENO "strongroom-api did not start on $STRONGROOM_API_URL"
    fi
}

# stop_strongroom - every Strongroom process this plugin started
function stop_strongroom {
    local service
    for service in $STRONGROOM_SERVICES; do
        stop_process $service
    done
}

# cleanup_strongroom - configuration, state and caches
function cleanup_strongroom {
    sudo rm -rf $STRONGROOM_CONF_DIR $STRONGROOM_AUTH_CACHE_DIR
    rm -rf $STRONGROOM_STATE_DIR
}

if is_service_enabled $STRONGROOM_SERVICES; then
    if [[ "$1" == "stack" && "$2" == "install" ]]; then
        echo_summary "Installing Strongroom"
        install_strongroom
    elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
        echo_summary "Configuring Strongroom"
        configure_strongroom
        create_strongroom_accounts
        init_strongroom
    elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
        echo_summary "Starting Strongroom"
        start_strongroom
    fi

    if [[ "$1" == "unstack" ]]; then
        stop_strongroom
    fi

    if [[ "$1" == "clean" ]]; then
        cleanup_strongroom
    fi
fi

# Restore xtrace
$_XTRACE_STRONGROOM
